//! The glob patterns of a component's `files` (`*`, `?` within a path segment, `**` across
//! segments), matched against paths relative to the manifest directory.

use std::path::Path;

fn has_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

fn segment_match(pat: &[u8], s: &[u8]) -> bool {
    match (pat.first(), s.first()) {
        (None, None) => true,
        (Some(b'*'), _) => {
            segment_match(&pat[1..], s) || (!s.is_empty() && segment_match(pat, &s[1..]))
        }
        (Some(b'?'), Some(_)) => segment_match(&pat[1..], &s[1..]),
        (Some(p), Some(c)) if p == c => segment_match(&pat[1..], &s[1..]),
        _ => false,
    }
}

fn path_match(pat: &[&str], path: &[&str]) -> bool {
    match pat.first() {
        None => path.is_empty(),
        Some(&"**") => (0..=path.len()).any(|skip| path_match(&pat[1..], &path[skip..])),
        Some(p) => {
            !path.is_empty()
                && segment_match(p.as_bytes(), path[0].as_bytes())
                && path_match(&pat[1..], &path[1..])
        }
    }
}

/// Whether `path` (relative, `/`-separated) matches `pattern`.
pub fn is_match(pattern: &str, path: &str) -> bool {
    let pat: Vec<&str> = pattern
        .split('/')
        .filter(|s| !s.is_empty() && *s != ".")
        .collect();
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    path_match(&pat, &segs)
}

/// Files under `root` matching `pattern`, as relative paths. A pattern without wildcards
/// naming a directory means everything below it.
pub fn matches(root: &Path, pattern: &str) -> anyhow::Result<Vec<String>> {
    let pattern = pattern.trim_start_matches("./");
    let pattern = if !has_glob(pattern) && root.join(pattern).is_dir() {
        format!("{}/**", pattern.trim_end_matches('/'))
    } else {
        pattern.to_string()
    };
    // Walk only below the pattern's literal prefix (never the whole app directory).
    let literal: Vec<&str> = pattern.split('/').take_while(|s| !has_glob(s)).collect();
    let start = literal.join("/");
    let mut out = Vec::new();
    let mut stack = vec![start.clone()];
    if root.join(&start).is_file() {
        return Ok(if is_match(&pattern, &start) {
            vec![start]
        } else {
            vec![]
        });
    }
    while let Some(rel) = stack.pop() {
        let dir = root.join(&rel);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries {
            let e = e?;
            let name = e.file_name().to_string_lossy().into_owned();
            let child = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            let ty = e.file_type()?;
            if ty.is_dir() {
                stack.push(child);
            } else if is_match(&pattern, &child) {
                out.push(child);
            }
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globbing() {
        assert!(is_match("static/**", "static/a/b.txt"));
        assert!(is_match("static/*.txt", "static/b.txt"));
        assert!(!is_match("static/*.txt", "static/a/b.txt"));
        assert!(is_match("**/*.md", "a/b/c.md"));
        assert!(is_match("a?c", "abc"));
        assert!(!is_match("a?c", "ac"));
    }

    #[test]
    fn walking() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("static/sub")).unwrap();
        std::fs::write(dir.path().join("static/a.txt"), "a").unwrap();
        std::fs::write(dir.path().join("static/sub/b.txt"), "b").unwrap();
        std::fs::write(dir.path().join("top.txt"), "t").unwrap();
        assert_eq!(
            matches(dir.path(), "static").unwrap(),
            ["static/a.txt", "static/sub/b.txt"]
        );
        assert_eq!(
            matches(dir.path(), "static/*.txt").unwrap(),
            ["static/a.txt"]
        );
        assert_eq!(matches(dir.path(), "top.txt").unwrap(), ["top.txt"]);
    }
}
