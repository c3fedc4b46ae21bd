//! Section and option names are checked before the `config` crate sees
//! them: it reads a top-level name as a path expression, so a file with a
//! line such as `x[99999999] = 1` (or a section `[x[99999999]]`) would make
//! it allocate an array of a hundred million entries. faafo's names are
//! plain words; anything else is refused with one line. (Found by the
//! `parse_config` fuzz target.)

/// Longest name shown in an error message.
const SHOWN: usize = 40;

/// Checks every section name of an INI text, parsed exactly as `config`
/// parses it, and refuses an option outside any section (faafo has none);
/// text that is not INI is refused with the line at fault.
pub(super) fn check_ini(text: &str) -> Result<(), String> {
    let ini = match ini::Ini::load_from_str(text) {
        Ok(ini) => ini,
        Err(e) => return Err(syntax_error(text, &e)),
    };
    let mut seen = std::collections::HashSet::new();
    for (section, options) in ini.iter() {
        match section {
            Some(section) => {
                check(section)?;
                // The INI reader keeps only the last block of a section
                // that appears twice: the first one's options would be
                // dropped without a word.
                if !seen.insert(section) {
                    return Err(format!(
                        "section [{}] appears twice: put its options in one [{}] section",
                        shown(section),
                        shown(section)
                    ));
                }
            }
            // Read by `config` as a section of that name, and refused as
            // an unknown section, which would mislead.
            None => {
                options.iter().try_for_each(|(key, _)| check(key))?;
                if let Some((key, _)) = options.iter().next() {
                    return Err(format!(
                        "option '{}' is outside any section: put it under [DEFAULT] \
                         (or the section it belongs to)",
                        shown(key)
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Where and why a file is not INI, in words: the first line that is
/// neither blank, a comment, a `[section]` nor `name = value` (the INI
/// reader's own message names the line after it at the end of a file).
fn syntax_error(text: &str, e: &ini::ParseError) -> String {
    let stray = text.lines().enumerate().find(|(_, line)| {
        let line = line.trim();
        !(line.is_empty()
            || line.starts_with('#')
            || line.starts_with(';')
            || (line.starts_with('[') && line.ends_with(']'))
            || line.contains('=')
            || line.contains(':'))
    });
    match stray {
        Some((number, line)) if line.trim_start().starts_with('[') && line.contains(']') => {
            format!(
                "line {}: '{}': a comment must be on a line of its own",
                number + 1,
                shown(line.trim())
            )
        }
        Some((number, line)) => format!(
            "line {}: '{}' is neither a [section] nor an option (name = value)",
            number + 1,
            shown(line.trim())
        ),
        // The reader counts lines from 1.
        None => format!("not a valid INI file: line {}: {}", e.line, e.msg),
    }
}

/// A name may hold letters, digits, `_`, `-` and `.`, and nothing else.
pub(super) fn check(name: &str) -> Result<(), String> {
    if name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        Ok(())
    } else {
        Err(format!(
            "'{}' is not a section or option name (expected letters, digits, '_', '-' or '.')",
            shown(name)
        ))
    }
}

/// `name`, escaped and cut short for an error message.
pub(super) fn shown(name: &str) -> String {
    let escaped: String = name.escape_debug().collect();
    match escaped.char_indices().nth(SHOWN) {
        Some((at, _)) => format!("{}...", &escaped[..at]),
        None => escaped,
    }
}
