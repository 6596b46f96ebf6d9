//! `cargo xtask new <path> --name <name>`: start a new project from this repository.
//!
//! Copies the files git tracks (never target/, local config or other ignored files), renames
//! the project token everywhere (file contents and paths, in its four spellings), drops the
//! parts the user opted out of, and starts a fresh git history. The same code runs in place for
//! the cargo-generate hook (`--in-place`), so both paths give the same tree.
//!
//! Opt-out sections: a line containing the marker `template:<part>:begin` (part is `firmware`
//! or `service`) starts a block that runs to the line containing `template:<part>:end`; when
//! that part is dropped, the block and its marker lines are removed. A line containing
//! `template:<part>:line` is a one-line section (for a Markdown table row, which a comment line
//! would cut in two). Use the comment syntax of the file (`#`, `//`, `<!-- -->`).
//!
//! Whole files and folders: a `template:<part>:file` line in a file's first lines drops the
//! file with that part (a file may name several parts: it goes when any of them goes); a
//! `.template-part` file in a folder, one part per line, drops the whole folder. These markers
//! are the only rule for what is dropped (no list of paths in this file), and the markers of
//! the parts that are kept stay in the new project, so it can drop them later in turn.

use crate::bail;
use crate::cmd::{Result, cmd};
use crate::fs;
use crate::project::root as project_root;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The template's project name, as it appears in crate names, paths and docs.
/// TODO(2): after `cargo xtask new`, this constant holds your project's name, so a project made
/// from this one can be a template in turn.
pub const TEMPLATE_NAME: &str = "beacon";

#[derive(Debug)]
pub struct Args {
    pub path: Option<PathBuf>,
    pub name: String,
    pub no_firmware: bool,
    pub no_service: bool,
    pub in_place: bool,
    pub no_git: bool,
    pub test: bool,
}

/// `cargo xtask new --help`.
pub const HELP: &str = "\
Start a new project from this template: copy, rename, drop opted-out parts, fresh git.

Usage: cargo xtask new [OPTIONS] --name <NAME> [PATH]

Arguments:
  [PATH]  Where to create the project (must not exist, or be an empty directory)

Options:
      --name <NAME>  The new project's name: lowercase letters, digits and '-', starting with a
                     letter
      --no-firmware  Leave out the firmware (firmware/, its tests, docs and recipes)
      --no-service   Leave out the service, the gateway and the demo (services/)
      --in-place     Rename this tree in place instead of copying (what the cargo-generate hook
                     runs); not with PATH
      --no-git       Do not create a git repository in the new project
      --test         Run the new project's `cargo xtask test` at the end
  -h, --help         Print help
";

impl Args {
    pub fn parse(a: &mut crate::args::Args) -> std::result::Result<Self, crate::args::Usage> {
        use crate::args::Usage;
        let name = a.value("--name")?.ok_or_else(|| {
            Usage("--name is required: `cargo xtask new --name my-project ../my-project`".into())
        })?;
        let args = Args {
            name,
            no_firmware: a.flag("--no-firmware", None)?,
            no_service: a.flag("--no-service", None)?,
            in_place: a.flag("--in-place", None)?,
            no_git: a.flag("--no-git", None)?,
            test: a.flag("--test", None)?,
            path: a.positional().map(PathBuf::from),
        };
        if args.in_place && args.path.is_some() {
            return Err(Usage(
                "--in-place renames this tree, so it takes no PATH; give one or the other".into(),
            ));
        }
        Ok(args)
    }
}

/// The four spellings of a project name.
#[derive(Debug, Clone)]
pub struct Names {
    pub kebab: String,
    pub snake: String,
    pub upper: String,
    pub title: String,
}

impl Names {
    pub fn new(name: &str) -> Result<Self> {
        let valid = name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !name.ends_with('-')
            && !name.contains("--");
        if !valid {
            bail!(
                "invalid project name `{name}`: use lowercase letters, digits and single '-', \
                 starting with a letter (e.g. `acme-sensors`)"
            );
        }
        let title = name
            .split('-')
            .map(|w| {
                let mut c = w.chars();
                c.next()
                    .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                    .unwrap_or_default()
            })
            .collect::<String>();
        Ok(Self {
            kebab: name.to_string(),
            snake: name.replace('-', "_"),
            upper: name.replace('-', "_").to_ascii_uppercase(),
            title,
        })
    }

    /// Replaces every spelling of `from` in `text` with the matching spelling of `self`.
    pub fn rename(&self, from: &Names, text: &str) -> String {
        text.replace(&from.upper, &self.upper)
            .replace(&from.title, &self.title)
            .replace(&format!("{}_", from.snake), &format!("{}_", self.snake))
            .replace(&from.kebab, &self.kebab)
    }
}

/// The folder marker file: the parts (one per line) whose removal drops the folder.
const PART_FILE: &str = ".template-part";

/// How many lines from the top of a file a `template:<part>:file` marker may stand at (after a
/// shebang, a crate doc line or two).
const FILE_MARKER_LINES: usize = 5;

/// Which optional parts to drop.
#[derive(Debug, Clone, Copy, Default)]
pub struct Drop {
    pub firmware: bool,
    pub service: bool,
}

impl Drop {
    /// The folders (relative, ending in `/`) that hold a `.template-part` file naming a
    /// dropped part, among `files`.
    fn dropped_dirs(&self, src: &Path, files: &[String]) -> Result<Vec<String>> {
        let mut dirs = Vec::new();
        for rel in files {
            let Some(dir) = rel.strip_suffix(PART_FILE) else {
                continue;
            };
            if !(dir.is_empty() || dir.ends_with('/')) {
                continue;
            }
            let parts = fs::read_to_string(src.join(rel))?;
            if parts.lines().any(|p| self.is_dropped(p.trim())) {
                dirs.push(dir.to_string());
            }
        }
        Ok(dirs)
    }

    /// Is the file `rel` (with contents `text`, when it is text) in a dropped part: under one
    /// of `dirs` ([`Drop::dropped_dirs`]) or with a `template:<part>:file` line near its top?
    fn drops_file(&self, dirs: &[String], rel: &str, text: Option<&str>) -> bool {
        dirs.iter().any(|d| rel.starts_with(d.as_str()))
            || text.is_some_and(|text| {
                text.lines().take(FILE_MARKER_LINES).any(|l| {
                    self.sections()
                        .iter()
                        .any(|(p, d)| *d && l.contains(&format!("template:{p}:file")))
                })
            })
    }

    fn is_dropped(&self, part: &str) -> bool {
        self.sections().iter().any(|(p, d)| *d && *p == part)
    }

    fn sections(&self) -> [(&'static str, bool); 2] {
        [("firmware", self.firmware), ("service", self.service)]
    }
}

/// Removes opt-out sections (see the module docs) from `text`.
pub fn strip_sections(text: &str, drop: Drop) -> Result<String> {
    let mut out = String::with_capacity(text.len());
    let mut skipping: Option<&str> = None;
    for line in text.split_inclusive('\n') {
        let mut marker = false;
        // A one-line section (e.g. a table row, where a comment line would end the table).
        if skipping.is_none()
            && drop
                .sections()
                .iter()
                .any(|(part, dropped)| *dropped && line.contains(&format!("template:{part}:line")))
        {
            continue;
        }
        for (part, dropped) in drop.sections() {
            if line.contains(&format!("template:{part}:begin")) {
                marker = true;
                if dropped && skipping.is_none() {
                    skipping = Some(part);
                }
            } else if line.contains(&format!("template:{part}:end")) {
                marker = true;
                if skipping == Some(part) {
                    skipping = None;
                    continue;
                }
            }
        }
        // The markers of parts that are kept stay, so the new project can drop them later;
        // a dropped part's begin and end lines go with its block.
        let dropped_marker = marker
            && drop.sections().iter().any(|(part, dropped)| {
                *dropped
                    && (line.contains(&format!("template:{part}:begin"))
                        || line.contains(&format!("template:{part}:end")))
            });
        if skipping.is_none() && !dropped_marker {
            out.push_str(line);
        }
    }
    if let Some(part) = skipping {
        bail!("unterminated `template:{part}:begin` section: add a `template:{part}:end` line");
    }
    Ok(out)
}

/// The files to copy: what git tracks, plus new files git would track (not ignored). Outside
/// a git checkout (e.g. in cargo-generate's scratch copy, which has no .git), every file but
/// build output.
fn template_files(root: &Path) -> Result<Vec<String>> {
    let mut files = BTreeSet::new();
    // Only this tree's own repository: without a .git here, `git ls-files` would list the files
    // of whatever repository encloses the scratch dir (e.g. a TMPDIR inside a checkout).
    if !root.join(".git").exists() {
        walk(root, root, &mut files)?;
        return Ok(files.into_iter().collect());
    }
    let listed = cmd("git")
        .args([
            "ls-files",
            "--cached",
            "--others",
            "--exclude-standard",
            "-z",
        ])
        .dir(root)
        .read();
    match listed {
        Ok(out) => files.extend(
            out.split('\0')
                .filter(|f| !f.is_empty())
                .map(str::to_string),
        ),
        Err(_) => walk(root, root, &mut files)?,
    }
    files.retain(|f| root.join(f).is_file());
    Ok(files.into_iter().collect())
}

/// Would `.gitignore` leave out `rel` (a path relative to the root)? The same list, for trees
/// without git: build output, VCS data, machine-local config and runtime data.
fn ignored(rel: &str) -> bool {
    let name = rel.rsplit('/').next().unwrap_or(rel);
    let top_level = [
        ".cargo/local.toml",
        ".cargo/fast.toml",
        "data",
        "protocol/fuzz/artifacts",
        "protocol/fuzz/coverage",
    ];
    name == ".git"
        || name == "target"
        || top_level.contains(&rel)
        || rel.starts_with(".cargo/local.toml.bak")
        || rel.starts_with(".cargo/fast.toml.bak")
        || ([".db", ".db-wal", ".db-shm"]
            .iter()
            .any(|ext| name.ends_with(ext))
            // .gitignore's `!/services/*/tests/data/*.db`: migration fixtures are kept.
            && !(rel.starts_with("services/")
                && rel.ends_with(".db")
                && rel.contains("/tests/data/")))
}

/// `path` relative to `root`, with `/` separators (what [`ignored`] and the markers match).
fn rel_path(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .to_string_lossy()
        .replace('\\', "/")
}

/// Every file under `dir` that git would not ignore (see [`ignored`]).
fn walk(root: &Path, dir: &Path, out: &mut BTreeSet<String>) -> Result {
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        let rel = rel_path(root, &path);
        if ignored(&rel) {
            continue;
        }
        if path.is_dir() {
            walk(root, &path, out)?;
        } else {
            out.insert(rel);
        }
    }
    Ok(())
}

/// Deletes what [`ignored`] matches under `dir`, but target/ and .git.
fn remove_ignored(root: &Path, dir: &Path) -> Result {
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        let rel = rel_path(root, &path);
        let name = path.file_name().unwrap_or_default();
        if name == "target" || name == ".git" {
            continue;
        }
        if ignored(&rel) {
            if path.is_dir() {
                fs::remove_dir_all(&path)?;
            } else {
                fs::remove_file(&path)?;
            }
        } else if path.is_dir() {
            remove_ignored(root, &path)?;
        }
    }
    Ok(())
}

pub fn run(args: Args) -> Result {
    let root = project_root();
    let to = Names::new(&args.name)?;
    let from = Names::new(TEMPLATE_NAME)?;
    let drop = Drop {
        firmware: args.no_firmware,
        service: args.no_service,
    };
    if args.in_place {
        let files = template_files(&root)?;
        // Before generating: the marker files go with their folders.
        let dropped_dirs = drop.dropped_dirs(&root, &files)?;
        generate(&root, &root, &files, &from, &to, drop)?;
        // What git does not track in a dropped folder (its build output) goes too.
        for dir in dropped_dirs {
            if root.join(&dir).exists() {
                fs::remove_dir_all(root.join(&dir))?;
            }
        }
        if !root.join(".git").exists() {
            // A scratch copy (cargo-generate's): what git would ignore was never listed, so
            // remove it, as `cargo xtask new` would not copy it. Not target/: this very run
            // builds there (the hook deletes it afterwards).
            remove_ignored(&root, &root)?;
        }
        prune_empty_dirs(&root)?;
        format_tree(&root)?;
        println!("renamed this tree to `{}`", to.kebab);
        return Ok(());
    }
    let Some(dest) = args.path else {
        bail!(
            "missing <path>: say where to create the project, e.g. `cargo xtask new ../{} --name {}`",
            to.kebab,
            to.kebab
        );
    };
    if dest.exists()
        && fs::read_dir(&dest)
            .map(|mut d| d.next().is_some())
            .unwrap_or(true)
    {
        bail!(
            "{} already exists and is not empty: pick a new path",
            dest.display()
        );
    }
    let files = template_files(&root)?;
    generate(&root, &dest, &files, &from, &to, drop)?;
    format_tree(&dest)?;
    if !args.no_git {
        cmd("git")
            .args(["init", "--quiet", "--initial-branch=main"])
            .dir(&dest)
            .read()?;
        cmd("git").args(["add", "--all"]).dir(&dest).read()?;
        cmd("git")
            .args([
                "-c",
                "user.name=xtask new",
                "-c",
                "user.email=xtask-new@localhost",
            ])
            .args(["commit", "--quiet", "-m"])
            .arg(format!(
                "Start {} from the {TEMPLATE_NAME} template",
                to.kebab
            ))
            .dir(&dest)
            .read()?;
    }
    println!("created {} in {}", to.kebab, dest.display());
    if args.test {
        cmd("cargo").args(["xtask", "test"]).dir(&dest).run()?;
    } else {
        println!("next: cd {} && cargo xtask test", dest.display());
    }
    Ok(())
}

/// Formats the new tree the way its own lint checks it (`just lint`, CI, the firmware tests):
/// a longer name moves line breaks and import order (`acme_sensors_x` sorts before `anyhow`,
/// `beacon_x` after), so a renamed tree is not rustfmt-clean. A failure is an error (the tree
/// stays as written): its lint would fail, and the cargo-generate hook shows output only then.
fn format_tree(dir: &Path) -> Result {
    let mut runs = vec![(dir.to_path_buf(), vec!["fmt", "--all"])];
    if dir.join("firmware/Cargo.toml").is_file() {
        runs.push((dir.join("firmware"), vec!["fmt"]));
    }
    if dir.join("firmware/host-tests/Cargo.toml").is_file() {
        let manifest = "firmware/host-tests/Cargo.toml";
        runs.push((dir.to_path_buf(), vec!["fmt", "--manifest-path", manifest]));
    }
    for (at, args) in runs {
        if let Err(e) = cmd("cargo").args(&args).dir(&at).read() {
            bail!(
                "the new tree is written but could not be formatted: {e}\n\
                 fix that, then run `cargo {}` in {}",
                args.join(" "),
                at.display()
            );
        }
    }
    Ok(())
}

/// Removes the directories under `dir` that are empty (or hold only empty directories), but
/// target/ and .git: after an in-place run, those dropped or renamed away. A copy never has
/// any (git tracks no empty directory), and cargo would trip on one matched by `services/*`.
fn prune_empty_dirs(dir: &Path) -> Result<bool> {
    let mut empty = true;
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path.file_name().unwrap_or_default();
        if path.is_dir() && name != "target" && name != ".git" && prune_empty_dirs(&path)? {
            fs::remove_dir(&path)?;
        } else {
            empty = false;
        }
    }
    Ok(empty)
}

/// Writes the renamed, trimmed copy of `files` (relative to `src`) into `dest`. With
/// `src == dest` it rewrites in place and removes dropped and renamed-away files.
pub fn generate(
    src: &Path,
    dest: &Path,
    files: &[String],
    from: &Names,
    to: &Names,
    drop: Drop,
) -> Result {
    let in_place = src == dest;
    let dirs = drop.dropped_dirs(src, files)?;
    let mut written = 0usize;
    for rel in files {
        let source = src.join(rel);
        let bytes = fs::read(&source)?;
        let text = std::str::from_utf8(&bytes).ok();
        if drop.drops_file(&dirs, rel, text) {
            if in_place {
                fs::remove_file(&source)?;
            }
            continue;
        }
        let target = dest.join(to.rename(from, rel));
        let bytes = match String::from_utf8(bytes) {
            Ok(text) => {
                let text = strip_sections(&text, drop)
                    .map_err(|e| crate::cmd::Error(format!("{rel}: {e}")))?;
                to.rename(from, &text).into_bytes()
            }
            Err(e) => e.into_bytes(), // binary (e.g. fuzz corpus): copied as is
        };
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent)?;
        }
        fs::write(&target, bytes)?;
        if in_place && target != source {
            fs::remove_file(&source)?;
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&source)
                .map(|m| m.permissions().mode())
                .unwrap_or(0o644);
            fs::set_permissions(&target, fs::Permissions::from_mode(mode))?;
        }
        written += 1;
    }
    if written == 0 {
        bail!(
            "no files found to copy from {}: is it a git checkout?",
            src.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_have_four_spellings() {
        let n = Names::new("acme-sensors").unwrap();
        assert_eq!(
            (n.kebab.as_str(), n.snake.as_str()),
            ("acme-sensors", "acme_sensors")
        );
        assert_eq!(
            (n.upper.as_str(), n.title.as_str()),
            ("ACME_SENSORS", "AcmeSensors")
        );
    }

    #[test]
    fn bad_names_are_refused_with_a_hint() {
        for bad in [
            "",
            "Acme",
            "1acme",
            "acme_x",
            "acme-",
            "a--b",
            "acme sensors",
        ] {
            let err = Names::new(bad).unwrap_err().to_string();
            assert!(err.contains("invalid project name"), "{bad}: {err}");
        }
    }

    #[test]
    fn rename_covers_every_spelling() {
        let from = Names::new("beacon").unwrap();
        let to = Names::new("acme-sensors").unwrap();
        let text = "beacon-protocol beacon_protocol::Frame BEACON_LISTEN Beacon beacon";
        assert_eq!(
            to.rename(&from, text),
            "acme-sensors-protocol acme_sensors_protocol::Frame ACME_SENSORS_LISTEN AcmeSensors acme-sensors"
        );
    }

    #[test]
    fn sections_are_dropped_or_kept() {
        // Markers built at run time, so this file itself holds no marker line.
        let (begin, end) = (
            format!("template:{}:begin", "firmware"),
            format!("template:{}:end", "firmware"),
        );
        let text = &format!("a\n# {begin}\nfw\n# {end}\nb\n");
        let dropped = strip_sections(
            text,
            Drop {
                firmware: true,
                service: false,
            },
        )
        .unwrap();
        assert_eq!(dropped, "a\nb\n");
        let kept = strip_sections(text, Drop::default()).unwrap();
        assert_eq!(&kept, text);
        let other = strip_sections(
            text,
            Drop {
                firmware: false,
                service: true,
            },
        )
        .unwrap();
        // Dropping the service keeps the firmware's markers: the new project can still drop
        // its firmware later.
        assert_eq!(&other, text);
    }

    #[test]
    fn file_and_folder_markers_are_the_only_rule_for_dropping_files() {
        let dir = std::env::temp_dir().join(format!("xtask-new-markers-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("a/b")).unwrap();
        std::fs::write(dir.join("a").join(PART_FILE), "# why\nfirmware\n").unwrap();
        let files = vec![
            format!("a/{PART_FILE}"),
            "a/b/c.rs".to_string(),
            "ab.rs".to_string(),
        ];
        let fw = Drop {
            firmware: true,
            service: false,
        };
        let dirs = fw.dropped_dirs(&dir, &files).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(dirs, ["a/"]);
        assert!(fw.drops_file(&dirs, "a/b/c.rs", None));
        assert!(!fw.drops_file(&dirs, "ab.rs", Some("fn main() {}\n")));
        assert!(Drop::default().dropped_dirs(&dir, &[]).unwrap().is_empty());
        let file_marker = format!("template:{}:file", "firmware");
        let marked = format!("// {file_marker}\n//! docs\n");
        assert!(fw.drops_file(&[], "x.rs", Some(&marked)));
        let svc = Drop {
            firmware: false,
            service: true,
        };
        assert!(!svc.drops_file(&[], "x.rs", Some(&marked)));
        let late = format!("{}// {file_marker}\n", "line\n".repeat(FILE_MARKER_LINES));
        assert!(
            !fw.drops_file(&[], "x.rs", Some(&late)),
            "only the first lines count"
        );
    }

    #[test]
    fn one_line_sections_drop_only_their_line() {
        let row = format!("| x | y <!-- template:{}:line --> |\n", "service");
        let text = format!("| a | b |\n{row}| c | d |\n");
        let dropped = strip_sections(
            &text,
            Drop {
                firmware: false,
                service: true,
            },
        )
        .unwrap();
        assert_eq!(dropped, "| a | b |\n| c | d |\n");
        let kept = strip_sections(
            &text,
            Drop {
                firmware: true,
                service: false,
            },
        )
        .unwrap();
        assert_eq!(kept, text);
    }

    #[test]
    fn without_git_the_same_files_are_copied_as_with_git() {
        // cargo-generate's scratch copy has no .git, so the hook's in-place run lists files by
        // walking the tree; it must pick exactly what git would (`ignored` mirrors .gitignore).
        let mut root = project_root();
        let mut walked = BTreeSet::new();
        walk(&root, &root, &mut walked).unwrap();
        let walked: Vec<String> = walked.into_iter().collect();
        // Outside a checkout (a tarball, a generated tree without git): make one from the
        // walked files, so git's own .gitignore rules still judge the walk.
        let scratch = std::env::temp_dir().join(format!("xtask-new-git-{}", std::process::id()));
        if !root.join(".git").exists() {
            let _ = std::fs::remove_dir_all(&scratch);
            for f in &walked {
                let to = scratch.join(f);
                std::fs::create_dir_all(to.parent().unwrap()).unwrap();
                std::fs::copy(root.join(f), &to).unwrap();
            }
            cmd("git").args(["init", "-q"]).dir(&scratch).run().unwrap();
            root = scratch.clone();
        }
        let with_git = template_files(&root).unwrap();
        let _ = std::fs::remove_dir_all(&scratch);
        let only_git: Vec<_> = with_git.iter().filter(|f| !walked.contains(f)).collect();
        let only_walk: Vec<_> = walked.iter().filter(|f| !with_git.contains(f)).collect();
        assert!(
            only_git.is_empty() && only_walk.is_empty(),
            "update `ignored` to match .gitignore; only git: {only_git:?}; only walk: {only_walk:?}"
        );
        assert!(ignored("target") && ignored("firmware/target") && ignored("app.db-wal"));
        assert!(!ignored("services/gateway/tests/data/x.bin") && ignored("data"));
    }

    #[test]
    fn unterminated_sections_are_an_error() {
        let text = format!("# template:{}:begin\nx\n", "service");
        let err = strip_sections(
            &text,
            Drop {
                firmware: false,
                service: true,
            },
        );
        assert!(
            err.unwrap_err()
                .to_string()
                .contains(&format!("template:{}:end", "service"))
        );
    }
}
