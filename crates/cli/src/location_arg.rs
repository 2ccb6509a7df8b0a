//! `--collection`, `--collections`, `--from`, `--to`: collection locations as clap arguments.
//!
//! Why not clap's parser from `FromStr`: on a bad value clap prints "invalid value '<the
//! value>'", and a `postgres://` value may hold a password. This parser reports only
//! `Location::parse`'s own message, which redacts it.

use std::ffi::OsStr;

use clap::builder::TypedValueParser;
use clap::error::ErrorKind;
use sift_index::Location;

#[derive(Clone, Copy, Debug, Default)]
pub struct LocationParser;

impl TypedValueParser for LocationParser {
    type Value = Location;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &OsStr,
    ) -> Result<Location, clap::Error> {
        let name = arg
            .map(|a| format!("--{}", a.get_long().unwrap_or(a.get_id().as_str())))
            .unwrap_or_else(|| "the collection".into());
        let text = value.to_str().ok_or_else(|| {
            clap::Error::raw(ErrorKind::InvalidUtf8, format!("{name} is not UTF-8\n")).with_cmd(cmd)
        })?;
        Location::parse(text).map_err(|e| {
            clap::Error::raw(ErrorKind::ValueValidation, format!("{name}: {e}\n")).with_cmd(cmd)
        })
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    #[derive(Parser)]
    struct Args {
        #[arg(long, value_parser = super::LocationParser)]
        collection: sift_index::Location,
    }

    #[test]
    fn a_bad_database_address_is_refused_without_its_password() {
        let e = Args::try_parse_from(["x", "--collection", "postgres://me:hunter2@h/db?bogus=1"])
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("--collection") && !e.contains("hunter2"), "{e}");
        let ok = Args::try_parse_from(["x", "--collection", "./dir"]).unwrap();
        assert_eq!(ok.collection, sift_index::Location::Local("./dir".into()));
    }
}
