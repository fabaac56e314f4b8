//! The conf_dir watch outlives its directory: deployment tools replace `conf.d` as a
//! whole (`rm -rf` and recreate, or build a new one and `mv` it into place), and every
//! later edit must still be seen, with or without SIGHUP.

mod common;

use common::versioned::{reporter, wait_version};
use common::Home;

/// Three versions of one collector, `python.d/v1` .. `v3`; the input `m` runs the
/// version its conf file names.
fn home_with_versions() -> Home {
    let home = Home::new();
    for version in 1..=3 {
        home.write(
            &format!("python.d/v{version}/p.py"),
            &reporter("m", version),
        );
    }
    home.input("m", &["v1"], "");
    home
}

fn conf_for(home: &Home, version: u32) -> String {
    format!(
        "[[inputs.pythond]]\nname = \"m\"\ncmd = \"python3\"\ndirs = [\"v{version}\"]\nenvs = [\"PYTHOND_TEST_MARKER={}\"]\n",
        home.marker
    )
}

#[test]
fn conf_dir_removed_and_recreated_is_watched_again() {
    let home = home_with_versions();
    let mut agent = home.start();
    wait_version(&agent, "m", 1);

    let conf = home.path().join("conf.d");
    std::fs::remove_dir_all(&conf).expect("rm -rf conf.d");
    std::fs::create_dir(&conf).expect("mkdir conf.d");
    std::fs::write(conf.join("m.conf"), conf_for(&home, 2)).expect("write conf");
    wait_version(&agent, "m", 2);

    // An edit in the new directory is seen without a signal.
    std::fs::write(conf.join("m.conf"), conf_for(&home, 3)).expect("edit conf");
    wait_version(&agent, "m", 3);
    assert!(agent.stop().success());
}

#[test]
fn conf_dir_swapped_in_with_mv_is_watched_again() {
    let home = home_with_versions();
    let mut agent = home.start();
    wait_version(&agent, "m", 1);

    let conf = home.path().join("conf.d");
    let fresh = home.path().join("conf.d.new");
    std::fs::create_dir(&fresh).expect("mkdir conf.d.new");
    std::fs::write(fresh.join("m.conf"), conf_for(&home, 2)).expect("write conf");
    std::fs::rename(&conf, home.path().join("conf.d.old")).expect("mv conf.d conf.d.old");
    std::fs::rename(&fresh, &conf).expect("mv conf.d.new conf.d");
    wait_version(&agent, "m", 2);

    std::fs::write(conf.join("m.conf"), conf_for(&home, 3)).expect("edit conf");
    wait_version(&agent, "m", 3);
    assert!(agent.stop().success());
}

#[test]
fn sighup_rescans_a_replaced_conf_dir() {
    let home = home_with_versions();
    let mut agent = home.start();
    wait_version(&agent, "m", 1);

    let conf = home.path().join("conf.d");
    std::fs::remove_dir_all(&conf).expect("rm -rf conf.d");
    std::fs::create_dir(&conf).expect("mkdir conf.d");
    std::fs::write(conf.join("m.conf"), conf_for(&home, 2)).expect("write conf");
    agent.signal(libc::SIGHUP);
    wait_version(&agent, "m", 2);
    std::fs::write(conf.join("m.conf"), conf_for(&home, 3)).expect("edit conf");
    agent.signal(libc::SIGHUP);
    wait_version(&agent, "m", 3);
    assert!(agent.stop().success());
}
