//! `switchboard plugin new NAME`: a matcher crate in the plugins workspace that builds
//! for wasm32-wasip2 as it stands, with a fixture for `switchboard plugin test` and a
//! README of the commands from build to install.
//!
//! The templates are `src/scaffold/*.tmpl`, compiled in. The crate is added to the
//! `members` of the workspace's `Cargo.toml` by a text edit that keeps the file's
//! formatting and comments; the edited file is parsed again and must differ from the
//! original by that one member, or nothing is written. The crate's folder is removed
//! again if anything after its creation fails.

use std::path::{Path, PathBuf};

const CARGO_TOML: &str = include_str!("scaffold/Cargo.toml.tmpl");
const LIB_RS: &str = include_str!("scaffold/lib.rs.tmpl");
const FIXTURE: &str = include_str!("scaffold/fixture.toml.tmpl");
const README: &str = include_str!("scaffold/README.md.tmpl");

/// The longest name accepted.
pub const MAX_NAME: usize = 64;

/// Names that would clash with the workspace's own folders, Rust's crates or keywords.
const RESERVED: &[&str] = &[
    "sdk",
    "wit",
    "target",
    "dist",
    "dist-test",
    "test-guests",
    "switchboard-matcher",
    "std",
    "core",
    "alloc",
    "test",
    "proc-macro",
    "as",
    "async",
    "await",
    "break",
    "const",
    "continue",
    "crate",
    "dyn",
    "else",
    "enum",
    "extern",
    "false",
    "fn",
    "for",
    "if",
    "impl",
    "in",
    "let",
    "loop",
    "match",
    "mod",
    "move",
    "mut",
    "pub",
    "ref",
    "return",
    "self",
    "static",
    "struct",
    "super",
    "trait",
    "true",
    "type",
    "unsafe",
    "use",
    "where",
    "while",
    "abstract",
    "become",
    "box",
    "do",
    "final",
    "gen",
    "macro",
    "override",
    "priv",
    "try",
    "typeof",
    "unsized",
    "virtual",
    "yield",
];

/// Why a plugin crate was not made.
#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    #[error(
        "`{name}` is not a usable plugin name: {why} (use lowercase letters, digits and `-`, starting with a letter, e.g. `skill-floor`)"
    )]
    Name { name: String, why: String },
    #[error("{0} already exists: choose another name, or move it away first")]
    Exists(String),
    #[error("{path}: {why}")]
    Workspace { path: String, why: String },
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
}

/// What `plugin new` made.
#[derive(Debug)]
pub struct Created {
    /// The crate's folder.
    pub dir: PathBuf,
    /// The files written, the crate's then the workspace manifest.
    pub files: Vec<PathBuf>,
    /// Build, test and install, from the repository's root ([`commands`]).
    pub next: [String; 3],
}

/// Checks that `name` makes a crate, a Rust identifier and a plugin name.
pub fn check_name(name: &str) -> Result<(), ScaffoldError> {
    let refuse = |why: &str| Err(ScaffoldError::Name { name: name.to_owned(), why: why.to_owned() });
    if name.is_empty() {
        return refuse("it is empty");
    }
    if name.len() > MAX_NAME {
        return refuse(&format!("it is longer than {MAX_NAME} characters"));
    }
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        return refuse("it must start with a lowercase letter");
    }
    if let Some(c) = name.chars().find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-')) {
        return refuse(&format!("`{c}` is not allowed"));
    }
    if name.ends_with('-') || name.contains("--") {
        return refuse("a `-` must sit between letters or digits");
    }
    if RESERVED.contains(&name) {
        return refuse("it is reserved (a folder of the workspace, a Rust crate or keyword)");
    }
    Ok(())
}

/// `skill-floor` → `SkillFloorMatcher`: a type name that no import of the template has.
fn type_name(name: &str) -> String {
    let mut out: String = name
        .split('-')
        .map(|part| {
            let mut chars = part.chars();
            chars.next().map_or_else(String::new, |c| c.to_ascii_uppercase().to_string() + chars.as_str())
        })
        .collect();
    if !out.ends_with("Matcher") {
        out.push_str("Matcher");
    }
    out
}

/// The commands that build the crate, test it on its fixture and install it, from the
/// repository's root, with the workspace at `shown_dir`.
pub fn commands(name: &str, shown_dir: &str) -> [String; 3] {
    let wasm = format!("{shown_dir}/target/wasm32-wasip2/release/{}.wasm", name.replace('-', "_"));
    [
        // Its own target folder, as plugins/build.sh: the wasm lands where the next
        // commands look, whatever CARGO_TARGET_DIR says.
        format!(
            "cargo build --release --target wasm32-wasip2 --manifest-path {shown_dir}/Cargo.toml \
             --target-dir {shown_dir}/target -p {name}"
        ),
        format!("target/release/switchboard plugin test {wasm} --fixture {shown_dir}/{name}/fixture.toml"),
        format!("install -D -m 644 {wasm} plugins/dist/{name}.wasm"),
    ]
}

fn render(template: &str, name: &str, shown_dir: &str) -> String {
    let [build, test, install] = commands(name, shown_dir);
    template
        .replace("{{build}}", &build)
        .replace("{{test}}", &test)
        .replace("{{install}}", &install)
        .replace("{{name}}", name)
        .replace("{{crate}}", &name.replace('-', "_"))
        .replace("{{type}}", &type_name(name))
        .replace("{{dir}}", shown_dir)
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ScaffoldError + '_ {
    move |source| ScaffoldError::Io { path: path.display().to_string(), source }
}

/// Makes the crate `name` in the workspace at `workspace` (`plugins`) and adds it to the
/// workspace's members.
pub fn create(name: &str, workspace: &Path) -> Result<Created, ScaffoldError> {
    check_name(name)?;
    let manifest_path = workspace.join("Cargo.toml");
    let shown = manifest_path.display().to_string();
    let manifest = std::fs::read_to_string(&manifest_path).map_err(|e| ScaffoldError::Workspace {
        path: shown.clone(),
        why: format!(
            "cannot read the plugins workspace's manifest ({e}); run from the repository's root or give --dir the \
             folder of the workspace's Cargo.toml"
        ),
    })?;
    let dir = workspace.join(name);
    if dir.exists() {
        return Err(ScaffoldError::Exists(dir.display().to_string()));
    }
    let edited = add_member(&manifest, name).map_err(|why| ScaffoldError::Workspace { path: shown.clone(), why })?;
    let shown_dir = workspace.display().to_string();
    let shown_dir = shown_dir.trim_end_matches('/');
    let files = [("Cargo.toml", CARGO_TOML), ("src/lib.rs", LIB_RS), ("fixture.toml", FIXTURE), ("README.md", README)];
    // `create_dir`, not `create_dir_all`: a folder made meanwhile is not overwritten.
    std::fs::create_dir(&dir).map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => ScaffoldError::Exists(dir.display().to_string()),
        _ => io(&dir)(e),
    })?;
    let write_all = || -> Result<Vec<PathBuf>, ScaffoldError> {
        let mut written = Vec::new();
        std::fs::create_dir(dir.join("src")).map_err(io(&dir))?;
        for (file, template) in files {
            let path = dir.join(file);
            std::fs::write(&path, render(template, name, shown_dir)).map_err(io(&path))?;
            written.push(path);
        }
        // Written beside, then renamed over: the manifest is never half-written.
        let tmp = workspace.join(format!(".Cargo.toml.{}.tmp", std::process::id()));
        std::fs::write(&tmp, &edited).map_err(io(&tmp))?;
        std::fs::rename(&tmp, &manifest_path).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            io(&manifest_path)(e)
        })?;
        written.push(manifest_path.clone());
        Ok(written)
    };
    match write_all() {
        Ok(files) => Ok(Created { dir, files, next: commands(name, shown_dir) }),
        Err(e) => {
            let _ = std::fs::remove_dir_all(&dir);
            Err(e)
        }
    }
}

/// The workspace manifest `text` with `member` appended to `[workspace] members`, its
/// formatting kept; or why not. The result is parsed again and checked.
pub fn add_member(text: &str, member: &str) -> Result<String, String> {
    let before: toml::Table = toml::from_str(text).map_err(|e| format!("not valid TOML: {}", e.message().trim()))?;
    let members = |t: &toml::Table| -> Option<Vec<String>> {
        let list = t.get("workspace")?.get("members")?.as_array()?;
        list.iter().map(|m| m.as_str().map(str::to_owned)).collect()
    };
    let old = members(&before)
        .ok_or("no `members` list of names in [workspace]: is this the plugins workspace? (give --dir its folder)")?;
    if old.iter().any(|m| m == member) {
        return Err(format!("`{member}` is already a member of the workspace; remove it from `members` first"));
    }
    for (table, keys) in [
        ("dependencies", &["switchboard-matcher", "serde", "serde_json"][..]),
        ("package", &["edition", "version", "publish"][..]),
    ] {
        for key in keys {
            if before.get("workspace").and_then(|w| w.get(table)).and_then(|t| t.get(key)).is_none() {
                return Err(format!(
                    "[workspace.{table}] has no `{key}`, which the new crate's Cargo.toml takes from the workspace \
                     (plugins/Cargo.toml in the repository has it)"
                ));
            }
        }
    }
    let (open, close) = members_span(text)
        .ok_or("cannot find `members = [...]` in [workspace] as written (add the member by hand, then run again)")?;
    let inner = &text[open + 1..close];
    // The last element (or the trailing comma), ignoring comments and white space.
    let mut last = None;
    let mut comma = false;
    scan(inner, |i, c, _| {
        if !c.is_whitespace() {
            comma = c == ',';
            last = Some(i);
        }
    });
    let quoted = format!("\"{member}\"");
    let edited = match last {
        None if !inner.contains('\n') => format!("{}{quoted}{}", &text[..=open], &text[open + 1..]),
        None => {
            format!("{}\n    {quoted},{}", &text[..=open], &text[open + 1..])
        }
        Some(i) if !inner.contains('\n') => {
            let at = open + 1 + i + 1;
            let insert = if comma { format!(" {quoted},") } else { format!(", {quoted}") };
            format!("{}{insert}{}", &text[..at], &text[at..])
        }
        Some(i) => {
            // After the line of the last element (its comment included), indented alike.
            let at = open + 1 + i;
            let line_start = text[..at].rfind('\n').map_or(0, |n| n + 1);
            let indent: String = text[line_start..].chars().take_while(|c| *c == ' ' || *c == '\t').collect();
            let line_end = text[at..].find('\n').map_or(close, |n| at + n).min(close);
            let (head, tail) = if comma {
                (text[..line_end].to_owned(), &text[line_end..])
            } else {
                (format!("{},{}", &text[..=at], &text[at + 1..line_end]), &text[line_end..])
            };
            let trailing = if comma { "," } else { "" };
            format!("{head}\n{indent}{quoted}{trailing}{tail}")
        }
    };
    let after: toml::Table =
        toml::from_str(&edited).map_err(|e| format!("adding the member broke the file ({})", e.message().trim()))?;
    let mut expected = before.clone();
    let mut want = old;
    want.push(member.to_owned());
    if let Some(toml::Value::Table(w)) = expected.get_mut("workspace") {
        w.insert("members".into(), toml::Value::Array(want.into_iter().map(toml::Value::String).collect()));
    }
    if after != expected {
        return Err("adding the member changed more than `members`: add it by hand".into());
    }
    Ok(edited)
}

/// Calls `f` with the byte offset and character of everything in `text` outside
/// comments, and whether it is part of a string (its quotes included).
fn scan(text: &str, mut f: impl FnMut(usize, char, bool)) {
    let mut quote = None;
    let mut comment = false;
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        if comment {
            comment = c != '\n';
            continue;
        }
        let in_string = match quote {
            Some(q) => {
                if q == '"' && c == '\\' && !escaped {
                    escaped = true;
                } else {
                    if c == q && !escaped {
                        quote = None;
                    }
                    escaped = false;
                }
                true
            }
            None if c == '#' => {
                comment = true;
                continue;
            }
            None if c == '"' || c == '\'' => {
                quote = Some(c);
                true
            }
            None => false,
        };
        f(i, c, in_string);
    }
}

/// The byte offsets of the `[` and `]` of `members = [...]` in the `[workspace]` table.
fn members_span(text: &str) -> Option<(usize, usize)> {
    let mut offset = 0;
    let mut in_workspace = false;
    for line in text.split_inclusive('\n') {
        let start = offset;
        offset += line.len();
        let trimmed = line.trim();
        if trimmed.starts_with('[') {
            let header = trimmed.split('#').next().unwrap_or("").trim();
            in_workspace = header == "[workspace]";
            continue;
        }
        let Some(rest) = trimmed.strip_prefix("members") else { continue };
        if !in_workspace || !rest.trim_start().starts_with('=') {
            continue;
        }
        let open = start + line.find('[')?;
        let mut close = None;
        let mut nested = false;
        scan(&text[open + 1..], |i, c, in_string| {
            if close.is_none() && !in_string {
                match c {
                    '[' => nested = true,
                    ']' => close = Some(open + 1 + i),
                    _ => {}
                }
            }
        });
        return close.filter(|_| !nested).map(|close| (open, close));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::{add_member, check_name, render, type_name};

    const REST: &str = "\n[workspace.package]\nedition = \"2024\"\nversion = \"0.1.0\"\npublish = false\n\n\
        [workspace.dependencies]\nswitchboard-matcher = { path = \"sdk\" }\nserde = \"1\"\nserde_json = \"1\"\n";

    fn with(members: &str) -> String {
        format!("# The plugins.\n[workspace]\nresolver = \"3\"\n{members}\n{REST}")
    }

    #[test]
    fn a_member_is_added_keeping_the_files_shape() {
        let cases = [
            (r#"members = ["sdk", "vip-scoring"]"#, r#"members = ["sdk", "vip-scoring", "new-one"]"#),
            (r#"members = ["sdk",]"#, r#"members = ["sdk", "new-one",]"#),
            (r#"members = []"#, r#"members = ["new-one"]"#),
            (
                "members = [\n    \"sdk\",\n    \"vip-scoring\", # the example\n]",
                "members = [\n    \"sdk\",\n    \"vip-scoring\", # the example\n    \"new-one\",\n]",
            ),
            (
                "members = [\n  \"sdk\",\n  \"vip-scoring\" # no trailing comma\n]",
                "members = [\n  \"sdk\",\n  \"vip-scoring\", # no trailing comma\n  \"new-one\"\n]",
            ),
            ("members = [\n]", "members = [\n    \"new-one\",\n]"),
            (r#"members = ["a]b", 'c#d'] # odd names"#, r#"members = ["a]b", 'c#d', "new-one"] # odd names"#),
        ];
        for (before, after) in cases {
            assert_eq!(add_member(&with(before), "new-one").unwrap(), with(after), "{before}");
        }
    }

    #[test]
    fn a_manifest_of_another_shape_is_refused_with_why() {
        let no_members = with("");
        assert!(add_member(&no_members, "x").unwrap_err().contains("no `members` list"));
        let twice = with(r#"members = ["x"]"#);
        assert!(add_member(&twice, "x").unwrap_err().contains("already a member"));
        let no_sdk = with(r#"members = ["a"]"#).replace("switchboard-matcher = { path = \"sdk\" }\n", "");
        assert!(
            add_member(&no_sdk, "x").unwrap_err().contains("[workspace.dependencies] has no `switchboard-matcher`")
        );
        let inline = format!("workspace = {{ members = [\"a\"] }}\n{}", REST.replace("[workspace.", "[ws."));
        assert!(add_member(&inline, "x").is_err());
        assert!(add_member("members = [", "x").unwrap_err().starts_with("not valid TOML"));
    }

    #[test]
    fn names_are_crate_names() {
        for good in ["a", "skill-floor", "vip2", "x-1-y"] {
            check_name(good).unwrap();
        }
        for (bad, why) in [
            ("", "empty"),
            ("Skill", "start with a lowercase letter"),
            ("1st", "start with a lowercase letter"),
            ("skill_floor", "`_` is not allowed"),
            ("a b", "` ` is not allowed"),
            ("a-", "between letters or digits"),
            ("a--b", "between letters or digits"),
            ("sdk", "reserved"),
            ("target", "reserved"),
            ("fn", "reserved"),
        ] {
            let e = check_name(bad).unwrap_err().to_string();
            assert!(e.contains(why) && e.contains("use lowercase letters"), "{bad}: {e}");
        }
        assert!(check_name(&"a".repeat(65)).is_err());
    }

    #[test]
    fn templates_are_filled_in() {
        assert_eq!(type_name("skill-floor"), "SkillFloorMatcher");
        assert_eq!(type_name("my-matcher"), "MyMatcher");
        assert_eq!(type_name("config"), "ConfigMatcher");
        let lib = render(super::LIB_RS, "skill-floor", "plugins");
        assert!(lib.contains("impl Guest for SkillFloorMatcher") && !lib.contains("{{"), "{lib}");
        let readme = render(super::README, "skill-floor", "plugins");
        assert!(readme.contains(
            "plugins/target/wasm32-wasip2/release/skill_floor.wasm --fixture plugins/skill-floor/fixture.toml"
        ));
        for template in [super::CARGO_TOML, super::FIXTURE] {
            let text = render(template, "skill-floor", "plugins");
            assert!(!text.contains("{{"));
            let _: toml::Table = toml::from_str(&text).unwrap();
        }
    }
}
