//! The .deb and the tarball, built by `packaging/build-deb` and `packaging/build-tarball`
//! from this test's own binary: package metadata, conffiles, maintainer scripts, the
//! install layout, the packaged config, the systemd unit (`systemd-analyze verify`), and
//! a shipped collector run by the unpacked `pythond check` from the unpacked tree.
//!
//! Hermetic: the package is unpacked with `dpkg-deb -x` into a scratch root, never
//! installed on the machine running the tests.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use common::{parse_points, run_to_end};

const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// What the collectors shipped in python.d/ are called (one directory each).
const COLLECTORS: &[&str] = &[
    "demo",
    "disk",
    "http_probe",
    "log_tail",
    "procs",
    "tcp_check",
];

/// The .deb built once for every test of this file, and a scratch root it is unpacked in.
struct Built {
    _dir: tempfile::TempDir,
    deb: PathBuf,
    root: PathBuf,
}

fn built() -> &'static Built {
    static BUILT: OnceLock<Built> = OnceLock::new();
    BUILT.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("pythond-pkg-")
            .tempdir()
            .expect("tempdir");
        let out = dir.path().join("out");
        let mut build = Command::new(Path::new(REPO).join("packaging/build-deb"));
        build
            .arg("--binary")
            .arg(env!("CARGO_BIN_EXE_pythond"))
            .arg("--out")
            .arg(&out);
        let (code, stdout, stderr) = run_to_end(build);
        assert_eq!(code, 0, "build-deb failed:\n{stdout}\n{stderr}");
        let deb = PathBuf::from(stdout.trim());
        let expected = out.join(format!(
            "pythond_{}_{}.deb",
            env!("CARGO_PKG_VERSION"),
            dpkg_arch()
        ));
        assert_eq!(deb, expected, "build-deb prints the path of the .deb");
        assert!(deb.is_file(), "{} was not written", deb.display());

        let root = dir.path().join("root");
        let (code, out_x, err_x) = run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root));
        assert_eq!(code, 0, "dpkg-deb -x failed:\n{out_x}\n{err_x}");
        Built {
            _dir: dir,
            deb,
            root,
        }
    })
}

/// Runs a command built in place (`run(Command::new(..).arg(..))`) to completion.
fn run(command: &mut Command) -> (i32, String, String) {
    run_to_end(std::mem::replace(command, Command::new("true")))
}

fn dpkg_arch() -> String {
    let (code, stdout, stderr) = run(Command::new("dpkg").arg("--print-architecture"));
    assert_eq!(code, 0, "dpkg --print-architecture: {stderr}");
    stdout.trim().to_string()
}

fn deb_field(deb: &Path, field: &str) -> String {
    let (code, stdout, stderr) = run(Command::new("dpkg-deb").arg("-f").arg(deb).arg(field));
    assert_eq!(code, 0, "dpkg-deb -f {field}: {stderr}");
    stdout.trim().to_string()
}

#[test]
fn deb_metadata_names_version_arch_and_python3_dependency() {
    let deb = &built().deb;
    assert_eq!(deb_field(deb, "Package"), "pythond");
    assert_eq!(deb_field(deb, "Version"), env!("CARGO_PKG_VERSION"));
    assert_eq!(deb_field(deb, "Architecture"), dpkg_arch());
    let depends = deb_field(deb, "Depends");
    assert!(
        depends.split(',').any(|d| d.trim().starts_with("python3")),
        "Depends must name python3: {depends:?}"
    );
    let (code, info, stderr) = run(Command::new("dpkg-deb").arg("-I").arg(deb));
    assert_eq!(code, 0, "dpkg-deb -I: {stderr}");
    for member in ["control", "conffiles", "postinst", "prerm", "postrm"] {
        assert!(
            info.lines()
                .any(|l| l.split_whitespace().any(|w| w == member)),
            "control archive lacks {member}:\n{info}"
        );
    }
}

#[test]
fn every_file_under_etc_is_a_conffile() {
    let built = built();
    let dir = control_dir();
    let conffiles = std::fs::read_to_string(dir.path().join("conffiles")).expect("conffiles");
    let listed: Vec<&str> = conffiles.lines().collect();
    assert!(listed.contains(&"/etc/pythond/pythond.toml"), "{listed:?}");
    for sample in [
        "http_probe",
        "procs",
        "disk",
        "log_tail",
        "tcp_check",
        "demo",
    ] {
        let path = format!("/etc/pythond/conf.d/samples/{sample}.conf.sample");
        assert!(listed.contains(&path.as_str()), "{path} not in {listed:?}");
    }
    // And every file the package puts under /etc is listed (upgrades keep edits).
    let mut shipped = Vec::new();
    collect_files(&built.root.join("etc"), &mut shipped);
    for file in shipped {
        let path = format!(
            "/{}",
            file.strip_prefix(&built.root)
                .expect("under root")
                .display()
        );
        assert!(
            listed.contains(&path.as_str()),
            "{path} is shipped but not a conffile"
        );
    }
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read_dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_files(&path, out);
        } else {
            out.push(path);
        }
    }
}

/// The control archive (control, conffiles, maintainer scripts) unpacked in a temp dir.
fn control_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let (code, _, stderr) = run(Command::new("dpkg-deb")
        .arg("-e")
        .arg(&built().deb)
        .arg(dir.path()));
    assert_eq!(code, 0, "dpkg-deb -e: {stderr}");
    dir
}

#[test]
fn maintainer_scripts_are_executable_and_valid_sh() {
    let control = control_dir();
    for script in ["postinst", "prerm", "postrm"] {
        let path = control.path().join(script);
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&path).expect("script").permissions(),
        );
        assert_eq!(mode & 0o755, 0o755, "{script} is not executable");
        let (code, _, stderr) = run(Command::new("sh").arg("-n").arg(&path));
        assert_eq!(code, 0, "sh -n {script}: {stderr}");
    }
}

/// Runs a maintainer script with a PATH of nothing but stubs that record their command
/// line: what it would do to a host, without doing it. A command the script needs and
/// the stubs lack fails the script (and the test) instead of reaching the real system.
/// `user_exists` is what the `getent` stub answers; `tools` are the stubs provided.
fn dry_run(script: &Path, args: &[&str], user_exists: bool, tools: &[&str]) -> Vec<String> {
    let dir = tempfile::tempdir().expect("tempdir");
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).expect("bin");
    let log = dir.path().join("calls");
    let stub = dir.path().join("stub");
    std::fs::write(
        &stub,
        "#!/bin/sh\nprintf '%s\\n' \"${0##*/} $*\" >> \"$STUB_LOG\"\n\
         if [ \"${0##*/}\" = getent ]; then exit \"$GETENT_STATUS\"; fi\nexit 0\n",
    )
    .expect("stub");
    std::fs::set_permissions(&stub, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod stub");
    for tool in tools {
        std::os::unix::fs::symlink(&stub, bin.join(tool)).expect("stub link");
    }
    let (code, stdout, stderr) = run(Command::new("/bin/sh")
        .arg(script)
        .args(args)
        .env_clear()
        .env("PATH", &bin)
        .env("STUB_LOG", &log)
        .env("GETENT_STATUS", if user_exists { "0" } else { "2" }));
    assert_eq!(
        code,
        0,
        "{} {args:?} failed:\n{stdout}\n{stderr}",
        script.display()
    );
    std::fs::read_to_string(&log)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// Every command a maintainer script may call.
const TOOLS: &[&str] = &[
    "getent",
    "addgroup",
    "adduser",
    "groupadd",
    "useradd",
    "delgroup",
    "deluser",
    "groupdel",
    "userdel",
    "mkdir",
    "chown",
    "chmod",
    "install",
    "rm",
    "systemctl",
    "deb-systemd-helper",
    "deb-systemd-invoke",
];

fn called(calls: &[String], prefix: &str) -> bool {
    calls.iter().any(|c| c.starts_with(prefix))
}

#[test]
fn postinst_creates_the_system_user_and_the_state_directories() {
    let control = control_dir();
    let postinst = control.path().join("postinst");

    let calls = dry_run(&postinst, &["configure"], false, TOOLS);
    assert!(
        called(&calls, "addgroup --quiet --system pythond"),
        "{calls:#?}"
    );
    assert!(
        called(
            &calls,
            "adduser --quiet --system --ingroup pythond --home /var/lib/pythond"
        ),
        "{calls:#?}"
    );
    assert!(
        called(&calls, "chown pythond:pythond /var/lib/pythond"),
        "{calls:#?}"
    );
    assert!(called(&calls, "chmod 0750 /var/lib/pythond"), "{calls:#?}");
    if !Path::new("/var/lib/pythond/python.d").exists() {
        assert!(
            called(
                &calls,
                "install -d -o root -g root -m 0755 /var/lib/pythond/python.d"
            ),
            "collectors' directory: root's, readable by the service: {calls:#?}"
        );
    }
    assert!(
        called(&calls, "deb-systemd-helper enable pythond.service"),
        "{calls:#?}"
    );

    // Without adduser (a minimal host): useradd.
    let no_adduser: Vec<&str> = TOOLS
        .iter()
        .copied()
        .filter(|t| !["adduser", "addgroup"].contains(t))
        .collect();
    let calls = dry_run(&postinst, &["configure"], false, &no_adduser);
    assert!(called(&calls, "groupadd --system pythond"), "{calls:#?}");
    assert!(
        called(&calls, "useradd --system --gid pythond"),
        "{calls:#?}"
    );

    // Upgrade: the user exists already and is left alone.
    let calls = dry_run(&postinst, &["configure", "0.0.9"], true, TOOLS);
    assert!(
        !called(&calls, "adduser") && !called(&calls, "useradd"),
        "{calls:#?}"
    );
    assert!(
        !calls
            .iter()
            .any(|c| c.contains("python.d") && c.starts_with("chown")),
        "the operator's collectors keep their owner: {calls:#?}"
    );
}

#[test]
fn postrm_keeps_data_on_remove_and_deletes_it_and_the_user_on_purge() {
    let control = control_dir();
    let postrm = control.path().join("postrm");

    let calls = dry_run(&postrm, &["remove"], true, TOOLS);
    assert!(!called(&calls, "rm "), "remove keeps the data: {calls:#?}");
    assert!(
        !called(&calls, "deluser") && !called(&calls, "userdel"),
        "{calls:#?}"
    );

    let calls = dry_run(&postrm, &["purge"], true, TOOLS);
    assert!(called(&calls, "rm -rf /var/lib/pythond"), "{calls:#?}");
    assert!(
        called(&calls, "deluser --quiet --system pythond"),
        "{calls:#?}"
    );
    assert!(
        called(&calls, "delgroup --quiet --system pythond"),
        "{calls:#?}"
    );
    assert!(
        called(&calls, "deb-systemd-helper purge pythond.service"),
        "{calls:#?}"
    );

    // Upgrades run postrm with `upgrade`: nothing is deleted.
    let calls = dry_run(&postrm, &["upgrade", "0.2.0"], true, TOOLS);
    assert!(!called(&calls, "rm "), "{calls:#?}");

    // prerm stops nothing on upgrade and never deletes.
    let prerm = control.path().join("prerm");
    let calls = dry_run(&prerm, &["upgrade", "0.2.0"], true, TOOLS);
    assert!(!called(&calls, "rm "), "{calls:#?}");
}

#[test]
fn package_installs_binary_runtime_collectors_config_and_unit() {
    let root = &built().root;
    let binary = root.join("usr/bin/pythond");
    let (code, stdout, stderr) = run(Command::new(&binary).arg("--version"));
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains(env!("CARGO_PKG_VERSION")), "{stdout}");
    for file in [
        "usr/lib/pythond/python/datakit_framework.py",
        "usr/lib/pythond/python/pythond_worker.py",
        "usr/lib/pythond/python/pythond_kinds.py",
        "usr/lib/pythond/python/syslogng.py",
        "usr/lib/pythond/python/ZenPacks/zenoss/PythonCollector/datasources/PythonDataSource.py",
        "usr/lib/systemd/system/pythond.service",
        "etc/pythond/pythond.toml",
        "usr/share/doc/pythond/README.md",
        "usr/share/doc/pythond/copyright",
    ] {
        assert!(root.join(file).is_file(), "{file} missing from the package");
    }
    for collector in COLLECTORS {
        let file = root.join(format!(
            "usr/lib/pythond/python.d/{collector}/{collector}.py"
        ));
        assert!(file.is_file(), "{} missing", file.display());
    }
    // The shipped shim is the one the agent embeds, importable for users' own tests.
    assert_eq!(
        std::fs::read(root.join("usr/lib/pythond/python/datakit_framework.py")).expect("shim"),
        std::fs::read(Path::new(REPO).join("python/datakit_framework.py")).expect("repo shim"),
    );
    let (code, _, stderr) = run(Command::new("python3")
        .args([
            "-c",
            "import datakit_framework; datakit_framework.DataKitFramework",
        ])
        .env("PYTHONPATH", root.join("usr/lib/pythond/python")));
    assert_eq!(code, 0, "shipped shim does not import: {stderr}");
}

#[test]
fn unpacked_pythond_checks_a_shipped_collector() {
    let root = &built().root;
    let mut check = Command::new(root.join("usr/bin/pythond"));
    check
        .arg("check")
        .arg(root.join("usr/lib/pythond/python.d/disk"))
        .env("DISK_MOUNTS", "/");
    let (code, stdout, stderr) = run(&mut check);
    assert_eq!(code, 0, "check failed:\n{stdout}\n{stderr}");
    let points = parse_points(&stdout);
    let disk = common::the_point(&points, "metric", "disk");
    assert_eq!(disk["tags"]["mount"], "/");
    assert!(
        disk["fields"]["total_bytes"].as_i64().unwrap_or(0) > 0,
        "{disk}"
    );
}

#[test]
fn packaged_config_and_every_sample_pass_config_check() {
    let root = &built().root;
    let toml = root.join("etc/pythond/pythond.toml");
    let text = std::fs::read_to_string(&toml).expect("pythond.toml");
    for line in [
        "data_dir = \"/var/lib/pythond\"",
        "conf_dir = \"/etc/pythond/conf.d\"",
        "python_dir = \"/var/lib/pythond/python.d\"",
    ] {
        assert!(text.contains(line), "packaged pythond.toml lacks {line}");
    }
    assert!(
        text.contains("type = \"stdout\""),
        "the service's points go to the journal"
    );

    // The same file with its paths moved into a scratch home, and every sample enabled:
    // what an operator gets after copying the samples to conf.d/*.conf.
    let home = tempfile::tempdir().expect("tempdir");
    let moved = text
        .replace(
            "/etc/pythond",
            &home.path().join("etc").display().to_string(),
        )
        .replace(
            "/var/lib/pythond",
            &home.path().join("var").display().to_string(),
        );
    std::fs::create_dir_all(home.path().join("etc/conf.d")).expect("conf.d");
    std::fs::create_dir_all(home.path().join("var/python.d")).expect("python.d");
    let main = home.path().join("etc/pythond.toml");
    std::fs::write(&main, moved).expect("write");
    let samples = root.join("etc/pythond/conf.d/samples");
    let mut enabled = 0;
    for entry in std::fs::read_dir(&samples).expect("samples").flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(stem) = name.strip_suffix(".conf.sample") else {
            continue;
        };
        let sample = std::fs::read_to_string(entry.path())
            .expect("sample")
            .replace(
                "/usr/lib/pythond",
                &root.join("usr/lib/pythond").display().to_string(),
            );
        std::fs::write(home.path().join(format!("etc/conf.d/{stem}.conf")), sample).expect("write");
        enabled += 1;
    }
    assert_eq!(
        enabled,
        COLLECTORS.len(),
        "one sample per shipped collector"
    );
    let (code, stdout, stderr) = run(Command::new(root.join("usr/bin/pythond"))
        .args(["config", "check", "--config"])
        .arg(&main));
    assert_eq!(code, 0, "config check failed:\n{stdout}\n{stderr}");
    assert!(
        format!("{stdout}{stderr}").contains(&format!("{enabled} input(s)")),
        "every sample is a valid input:\n{stdout}\n{stderr}"
    );

    // As shipped, the samples are not loaded: their suffix is not `.conf`.
    let shipped = root.join("etc/pythond/conf.d");
    let moved_shipped = text.replace(
        "conf_dir = \"/etc/pythond/conf.d\"",
        &format!("conf_dir = {:?}", shipped.display().to_string()),
    );
    std::fs::write(&main, moved_shipped).expect("write");
    let (code, stdout, stderr) = run(Command::new(root.join("usr/bin/pythond"))
        .args(["config", "check", "--config"])
        .arg(&main));
    assert_eq!(code, 0, "config check failed:\n{stdout}\n{stderr}");
    assert!(
        format!("{stdout}{stderr}").contains("0 input(s)"),
        "samples must not be loaded as shipped:\n{stdout}\n{stderr}"
    );
}

#[test]
fn systemd_unit_has_the_service_settings_and_verifies() {
    let root = &built().root;
    let unit =
        std::fs::read_to_string(root.join("usr/lib/systemd/system/pythond.service")).expect("unit");
    for line in [
        "User=pythond",
        "ExecStart=/usr/bin/pythond run --config /etc/pythond/pythond.toml",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "Restart=on-failure",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ReadWritePaths=/var/lib/pythond",
        "PrivateTmp=yes",
        "WantedBy=multi-user.target",
    ] {
        assert!(unit.lines().any(|l| l == line), "unit lacks {line}");
    }

    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("systemd-analyze not available: unit not verified");
        return;
    }
    // verify checks that ExecStart exists: point it at the unpacked binary.
    let dir = tempfile::tempdir().expect("tempdir");
    let copy = dir.path().join("pythond.service");
    std::fs::write(
        &copy,
        unit.replace(
            "/usr/bin/pythond",
            &root.join("usr/bin/pythond").display().to_string(),
        ),
    )
    .expect("write unit");
    let (code, stdout, stderr) = run(Command::new("systemd-analyze").arg("verify").arg(&copy));
    assert_eq!(code, 0, "systemd-analyze verify:\n{stdout}\n{stderr}");
    // It exits 0 even for lines it ignores; any message about our unit is a defect.
    assert!(
        !stderr.contains("pythond.service"),
        "systemd-analyze verify complained:\n{stderr}"
    );
}

#[test]
fn tarball_holds_the_same_tree_as_the_deb() {
    let root = &built().root;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut build = Command::new(Path::new(REPO).join("packaging/build-tarball"));
    build
        .arg("--binary")
        .arg(env!("CARGO_BIN_EXE_pythond"))
        .arg("--out")
        .arg(dir.path());
    let (code, stdout, stderr) = run(&mut build);
    assert_eq!(code, 0, "build-tarball failed:\n{stdout}\n{stderr}");
    let tarball = PathBuf::from(stdout.trim());
    let name = format!("pythond-{}-{}", env!("CARGO_PKG_VERSION"), dpkg_arch());
    assert_eq!(tarball, dir.path().join(format!("{name}.tar.gz")));
    let (code, _, stderr) = run(Command::new("tar")
        .arg("-xzf")
        .arg(&tarball)
        .arg("-C")
        .arg(dir.path()));
    assert_eq!(code, 0, "tar -x: {stderr}");
    let top = dir.path().join(&name);
    assert!(top.join("INSTALL.txt").is_file());
    let mut in_deb = Vec::new();
    collect_files(root, &mut in_deb);
    for file in in_deb {
        let rel = file.strip_prefix(root).expect("under root");
        if rel.ends_with("changelog.gz") {
            continue; // Debian's changelog convention: the .deb's own
        }
        assert!(
            top.join(rel).is_file(),
            "{} is in the .deb but not the tarball",
            rel.display()
        );
    }
}

#[test]
fn package_ships_the_man_page_and_shell_completions_of_its_binary() {
    let root = &built().root;
    let man = root.join("usr/share/man/man1/pythond.1.gz");
    let (code, page, stderr) = run(Command::new("gzip").arg("-dc").arg(&man));
    assert_eq!(code, 0, "{}: {stderr}", man.display());
    assert!(page.contains(".TH pythond 1"), "not a man(1) page:\n{page}");
    for word in ["check", "completions", "\\-\\-log\\-level"] {
        assert!(page.contains(word), "the man page lacks {word}");
    }
    // One page per command, with its own options: pythond-check(1) has --allow-empty.
    let check = root.join("usr/share/man/man1/pythond-check.1.gz");
    let (code, page, stderr) = run(Command::new("gzip").arg("-dc").arg(&check));
    assert_eq!(code, 0, "{}: {stderr}", check.display());
    assert!(page.contains(".TH pythond-check 1"), "{page}");
    assert!(page.contains("\\-\\-allow\\-empty"), "{page}");
    // It renders (man -l reads a local file; no pager, fixed width).
    let (code, text, stderr) = run(Command::new("man")
        .arg("-l")
        .arg(&man)
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "80"));
    if code == 0 {
        assert!(text.contains("pythond"), "{text}");
    } else {
        eprintln!("man could not render here ({stderr}); the roff was checked above");
    }
    let bash = root.join("usr/share/bash-completion/completions/pythond");
    let (code, stdout, stderr) = run(Command::new("bash")
        .arg("-c")
        .arg(format!("source {} && complete -p pythond", bash.display())));
    assert_eq!(code, 0, "the bash completion does not load: {stderr}");
    assert!(stdout.contains("pythond"), "{stdout}");
    for file in [
        "usr/share/zsh/vendor-completions/_pythond",
        "usr/share/fish/vendor_completions.d/pythond.fish",
    ] {
        let text = std::fs::read_to_string(root.join(file))
            .unwrap_or_else(|e| panic!("{file} missing from the package: {e}"));
        assert!(text.contains("allow-empty"), "{file} is not pythond's");
    }
}

#[test]
fn tarball_install_steps_give_python_d_the_owner_the_deb_gives_it() {
    let install = std::fs::read_to_string(Path::new(REPO).join("packaging/INSTALL.txt"))
        .expect("INSTALL.txt");
    let postinst = std::fs::read_to_string(Path::new(REPO).join("packaging/debian/postinst"))
        .expect("postinst");
    let owner = |text: &str| {
        text.lines()
            .find(|l| l.contains("install -d") && l.contains("python.d"))
            .map(|l| {
                l.split_whitespace()
                    .collect::<Vec<_>>()
                    .windows(2)
                    .filter(|w| w[0] == "-o" || w[0] == "-g" || w[0] == "-m")
                    .map(|w| w[1].to_string())
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
    };
    assert_eq!(owner(&postinst), ["root", "root", "0755"], "{postinst}");
    assert_eq!(owner(&install), owner(&postinst), "{install}");
}
