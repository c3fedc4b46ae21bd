//! Declaring options once, with their defaults and help, and writing the
//! sample configuration files from those declarations.

use std::fmt::Write;

/// One option, as the sample file documents it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptionDoc {
    /// The key, e.g. `bind_port`.
    pub key: &'static str,
    /// One-line help.
    pub help: String,
    /// The default, as it would be written in the file.
    pub default: String,
    /// For a whole-number option, the smallest and largest value it takes
    /// (an error names the range).
    pub whole_range: Option<(i64, u64)>,
    /// Whether the option is a number (whole or not): the words a boolean
    /// takes (`yes`, `on`...) are refused there, not read as 1 or 0.
    pub number: bool,
}

/// A configuration section declared with [`config_section!`](crate::config_section!).
pub trait Section: Default {
    /// The section's name in the INI file (`DEFAULT`, `api`...).
    const NAME: &'static str;
    /// What the section is for.
    fn help() -> &'static str;
    /// Its options, in declaration order.
    fn options() -> Vec<OptionDoc>;
}

/// How a default value is written in a sample file.
pub trait SampleValue {
    /// For a whole-number type, the smallest and largest value it holds.
    const WHOLE_RANGE: Option<(i64, u64)> = None;
    /// Whether the type is a number (whole or not).
    const NUMBER: bool = false;

    /// The INI text of the value.
    fn sample(&self) -> String;
}

macro_rules! display_sample {
    ($($t:ty),*) => {
        $(impl SampleValue for $t {
            fn sample(&self) -> String {
                self.to_string()
            }
        })*
    };
}
display_sample!(String, bool, super::CommaList);

impl SampleValue for f64 {
    const NUMBER: bool = true;

    fn sample(&self) -> String {
        self.to_string()
    }
}

macro_rules! whole_sample {
    ($($t:ty),*) => {
        $(impl SampleValue for $t {
            // Every type listed fits between i64's minimum and u64's maximum.
            const WHOLE_RANGE: Option<(i64, u64)> = Some((<$t>::MIN as i64, <$t>::MAX as u64));
            const NUMBER: bool = true;

            fn sample(&self) -> String {
                self.to_string()
            }
        })*
    };
}
whole_sample!(u16, u32, u64, usize, i64);

/// Declares a configuration section: a struct whose fields are the options,
/// each with a doc comment (its help) and a default. The struct refuses
/// unknown keys, fills missing ones with their defaults, and implements
/// [`Section`] for the sample files.
///
/// ```
/// faafo_common::config_section! {
///     /// Options of the example.
///     pub struct ExampleSection ["example"] {
///         /// Port to listen on.
///         port: u16 = 8080,
///     }
/// }
/// ```
#[macro_export]
macro_rules! config_section {
    (
        $(#[doc = $sdoc:literal])*
        $vis:vis struct $name:ident [$section:literal] {
            $(
                $(#[doc = $doc:literal])+
                $field:ident : $ty:ty = $default:expr
            ),* $(,)?
        }
    ) => {
        $(#[doc = $sdoc])*
        #[derive(Debug, Clone, PartialEq, serde::Deserialize)]
        #[serde(default, deny_unknown_fields)]
        $vis struct $name {
            $(
                $(#[doc = $doc])+
                pub $field: $ty,
            )*
        }

        impl Default for $name {
            fn default() -> Self {
                Self {
                    $($field: $default,)*
                }
            }
        }

        impl $crate::configuration::Section for $name {
            const NAME: &'static str = $section;

            fn help() -> &'static str {
                concat!($($sdoc),*).trim_ascii()
            }

            fn options() -> Vec<$crate::configuration::OptionDoc> {
                let defaults = Self::default();
                vec![$(
                    $crate::configuration::OptionDoc {
                        key: stringify!($field),
                        help: [$($doc),+].iter().map(|l| l.trim()).collect::<Vec<_>>().join(" "),
                        default: $crate::configuration::SampleValue::sample(&defaults.$field),
                        whole_range: <$ty as $crate::configuration::SampleValue>::WHOLE_RANGE,
                        number: <$ty as $crate::configuration::SampleValue>::NUMBER,
                    },
                )*]
            }
        }
    };
}

/// The documentation of one section, for [`sample_config`].
pub struct SectionDoc {
    name: &'static str,
    help: &'static str,
    options: Vec<OptionDoc>,
}

impl SectionDoc {
    /// The section's name in the INI file.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Its options, in declaration order.
    pub fn options(&self) -> &[OptionDoc] {
        &self.options
    }

    /// The documentation of section `S`.
    pub fn of<S: Section>() -> Self {
        Self {
            name: S::NAME,
            help: S::help(),
            options: S::options(),
        }
    }
}

/// A sample INI file: every option of the given sections, commented out,
/// with its help and default.
pub fn sample_config(title: &str, sections: &[SectionDoc]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# {title}");
    let _ = writeln!(
        out,
        "# Generated by --print-sample-config. Every option is shown with its default,\n\
         # commented out; environment variables FAAFO_<SECTION>__<KEY> override files."
    );
    for section in sections {
        let _ = writeln!(out, "\n[{}]", section.name);
        if !section.help.is_empty() {
            let _ = writeln!(out, "# {}", section.help);
        }
        for option in &section.options {
            let _ = writeln!(out, "\n# {}", option.help);
            let _ = writeln!(out, "#{} = {}", option.key, option.default);
        }
    }
    out
}
