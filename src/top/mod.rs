//! `pythond top`: a live terminal view of a running agent (docs/OPERATIONS.md), in
//! the manner of `datakit monitor` and `vector top`.
//!
//! Every refresh fetches `GET /v1/status` ([`crate::status::fetch`]) and feeds it to
//! the [`model`], which turns counters into rates; this module draws the model with
//! ratatui on crossterm's alternate screen: a header, the agent's points per second
//! as a sparkline, a table of plugins (runs/s, points/s, errors, lateness, a
//! sparkline of points/s, last error) and one of sinks (queue depth, sent/s,
//! dropped, last error). `q`, Esc or Ctrl-C quit. An agent that stops answering is
//! shown as an error line while the last rows stay and refreshing goes on.

pub mod model;

use std::io::Stdout;
use std::time::{Duration, Instant};

use crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use crossterm::terminal::{self, EnterAlternateScreen, LeaveAlternateScreen};
use ratatui::backend::CrosstermBackend;
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Sparkline, Table};
use ratatui::{Frame, Terminal};

use crate::api_target::ApiTarget;
use model::{spark, Top};

/// The terminal could not be driven.
#[derive(Debug, thiserror::Error)]
#[error("pythond top needs a terminal: {0}")]
pub struct TopError(#[from] std::io::Error);

/// Puts the terminal back as it was, however the view ends.
struct Screen {
    terminal: Terminal<CrosstermBackend<Stdout>>,
}

impl Screen {
    fn open() -> Result<Screen, TopError> {
        terminal::enable_raw_mode()?;
        let mut stdout = std::io::stdout();
        if let Err(error) = crossterm::execute!(stdout, EnterAlternateScreen) {
            let _ = terminal::disable_raw_mode();
            return Err(error.into());
        }
        let terminal = Terminal::new(CrosstermBackend::new(stdout))?;
        Ok(Screen { terminal })
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        let _ = terminal::disable_raw_mode();
        let _ = crossterm::execute!(self.terminal.backend_mut(), LeaveAlternateScreen);
        let _ = self.terminal.show_cursor();
    }
}

/// Runs the view until the user quits, refreshing every `interval`.
pub fn run(target: &ApiTarget, interval: Duration) -> Result<(), TopError> {
    let mut screen = Screen::open()?;
    let mut top = Top::default();
    let mut next_fetch = Instant::now();
    loop {
        if Instant::now() >= next_fetch {
            match crate::status::fetch(&target.addr, target.token.as_deref()) {
                Ok(status) => top.update(Instant::now(), &status),
                Err(error) => top.fail(error.to_string()),
            }
            next_fetch = Instant::now() + interval;
            screen.terminal.draw(|frame| draw(frame, &top, target))?;
        }
        let wait = next_fetch.saturating_duration_since(Instant::now());
        if event::poll(wait)? {
            match event::read()? {
                Event::Key(key) if key.kind == KeyEventKind::Press => {
                    let ctrl_c = key.code == KeyCode::Char('c')
                        && key.modifiers.contains(KeyModifiers::CONTROL);
                    if matches!(key.code, KeyCode::Char('q') | KeyCode::Esc) || ctrl_c {
                        return Ok(());
                    }
                }
                Event::Resize(_, _) => {
                    screen.terminal.draw(|frame| draw(frame, &top, target))?;
                }
                _ => {}
            }
        }
    }
}

fn rate(value: f64) -> String {
    if value >= 100.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.1}")
    }
}

fn first_line(text: &Option<String>) -> String {
    text.as_deref()
        .and_then(|t| t.lines().next())
        .unwrap_or("")
        .to_string()
}

fn draw(frame: &mut Frame, top: &Top, target: &ApiTarget) {
    let [header, trend, plugins, sinks, footer] = Layout::vertical([
        Constraint::Length(2),
        Constraint::Length(4),
        Constraint::Min(5),
        Constraint::Length((top.sinks.len() as u16 + 3).min(10)),
        Constraint::Length(1),
    ])
    .areas(frame.area());

    let mut lines = vec![Line::from(format!(
        "pythond {}  up {}s  API {}  points/s {}",
        top.version,
        top.uptime_seconds,
        if top.listen == "-" {
            &target.addr
        } else {
            &top.listen
        },
        rate(top.points_per_s),
    ))];
    if let Some(error) = &top.error {
        lines.push(Line::from(format!("agent not answering: {error}")));
    } else if let Some(error) = &top.reload_error {
        lines.push(Line::from(format!("configuration errors: {error}")));
    }
    frame.render_widget(Paragraph::new(lines), header);

    let history: Vec<u64> = top.total_history.iter().copied().collect();
    frame.render_widget(
        Sparkline::default()
            .block(
                Block::default()
                    .borders(Borders::ALL)
                    .title("points accepted per second"),
            )
            .data(&history),
        trend,
    );

    let bold = Style::default().add_modifier(Modifier::BOLD);
    let plugin_rows = top.plugins.iter().map(|p| {
        Row::new(vec![
            Cell::from(p.input.clone()),
            Cell::from(p.plugin.clone()),
            Cell::from(p.state.clone()),
            Cell::from(rate(p.runs_per_s)),
            Cell::from(rate(p.points_per_s)),
            Cell::from(p.errors.to_string()),
            Cell::from(p.lateness.clone().unwrap_or_else(|| "-".into())),
            Cell::from(spark(&p.history, 20)),
            Cell::from(first_line(&p.last_error)),
        ])
    });
    frame.render_widget(
        Table::new(
            plugin_rows,
            [
                Constraint::Length(14),
                Constraint::Length(22),
                Constraint::Length(11),
                Constraint::Length(7),
                Constraint::Length(9),
                Constraint::Length(7),
                Constraint::Length(8),
                Constraint::Length(20),
                Constraint::Min(10),
            ],
        )
        .header(
            Row::new(vec![
                "INPUT",
                "PLUGIN",
                "STATE",
                "RUNS/S",
                "POINTS/S",
                "ERRORS",
                "LATE",
                "TREND",
                "LAST ERROR",
            ])
            .style(bold),
        )
        .block(Block::default().borders(Borders::ALL).title("plugins")),
        plugins,
    );

    let sink_rows = top.sinks.iter().map(|s| {
        Row::new(vec![
            Cell::from(s.name.clone()),
            Cell::from(s.kind.clone()),
            Cell::from(s.queued_points.to_string()),
            Cell::from(rate(s.sent_per_s)),
            Cell::from(s.dropped.to_string()),
            Cell::from(first_line(&s.last_error)),
        ])
    });
    frame.render_widget(
        Table::new(
            sink_rows,
            [
                Constraint::Length(16),
                Constraint::Length(10),
                Constraint::Length(10),
                Constraint::Length(9),
                Constraint::Length(9),
                Constraint::Min(10),
            ],
        )
        .header(
            Row::new(vec![
                "SINK",
                "TYPE",
                "QUEUED",
                "SENT/S",
                "DROPPED",
                "LAST ERROR",
            ])
            .style(bold),
        )
        .block(Block::default().borders(Borders::ALL).title("sinks")),
        sinks,
    );
    frame.render_widget(Paragraph::new("q quit"), footer);
}
