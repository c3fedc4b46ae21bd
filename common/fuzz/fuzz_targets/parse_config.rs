//! Any text as an INI configuration file: accepted or refused with one
//! line, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    faafo_common::messaging::fuzzing::parse_config(text);
});
