//! The `[limits]` table (DESIGN invariant 5): every key optional, each with its
//! default and lower bound, plus the rules across keys
//! (`connections_per_ip <= connections`, in `[limits]` and in each
//! `[limits.<role>]`; `session_timeout >= command_timeout`).

use std::time::Duration;

use toml::Spanned;

use super::Checker;
use crate::config::raw::{RawBudget, RawLimits};
use crate::config::{ConfigError, ConnectionBudget, Limits, Role, RoleBudgets};

/// Default `message_size`: 25 MiB.
const DEFAULT_MESSAGE_SIZE: u64 = 25 << 20;
/// Smallest `message_size`: 1 KiB.
const MIN_MESSAGE_SIZE: u64 = 1 << 10;
/// Default `min_data_rate`: 1 KiB per second.
const DEFAULT_MIN_DATA_RATE: u64 = 1 << 10;
/// Default `free_space`: 100 MiB kept free on data_dir's filesystem.
const DEFAULT_FREE_SPACE: u64 = 100 << 20;
/// Shortest timeout.
const SECOND: Duration = Duration::from_secs(1);

impl Checker<'_> {
    pub(super) fn limits(&self, raw: &RawLimits) -> Result<Limits, ConfigError> {
        let message_size = match &raw.message_size {
            Some(size) => self.size("limits.message_size", size, MIN_MESSAGE_SIZE, "1K")?,
            None => DEFAULT_MESSAGE_SIZE,
        };
        let recipients = self.count("limits.recipients", raw.recipients.as_ref(), 100, 1, "")?;
        let local_messages_per_hour = self.count(
            "limits.local_messages_per_hour",
            raw.local_messages_per_hour.as_ref(),
            100,
            1,
            "",
        )?;
        let connections = self.count("limits.connections", raw.connections.as_ref(), 100, 1, "")?;
        let connections_per_ip = self.count(
            "limits.connections_per_ip",
            raw.connections_per_ip.as_ref(),
            10,
            1,
            "",
        )?;
        let errors = self.count("limits.errors", raw.errors.as_ref(), 10, 1, "")?;
        // RFC 5321 §4.5.3.1.4: a command line may be 512 octets; we must take that.
        let line_length = self.count(
            "limits.line_length",
            raw.line_length.as_ref(),
            2048,
            512,
            " (RFC 5321 §4.5.3.1.4)",
        )?;
        // RFC 5321 §4.5.3.2.6-7: 3 minutes between data blocks, 5 per command.
        let timeout = |key: &str, value, default_secs| {
            self.duration(key, value, Duration::from_secs(default_secs), SECOND)
        };
        let command_timeout = timeout("limits.command_timeout", raw.command_timeout.as_ref(), 300)?;
        let data_timeout = timeout("limits.data_timeout", raw.data_timeout.as_ref(), 180)?;
        let session_timeout =
            timeout("limits.session_timeout", raw.session_timeout.as_ref(), 1800)?;
        let min_data_rate = match &raw.min_data_rate {
            Some(rate) => self.size("limits.min_data_rate", rate, 0, "0")?,
            None => DEFAULT_MIN_DATA_RATE,
        };
        if connections_per_ip > connections {
            return Err(self.at_either(
                raw.connections_per_ip.as_ref(),
                raw.connections.as_ref(),
                format!(
                    "limits.connections_per_ip ({connections_per_ip}) is more than \
                     limits.connections ({connections}): expected at most {connections}"
                ),
            ));
        }
        let default = ConnectionBudget {
            connections,
            connections_per_ip,
        };
        let budgets = RoleBudgets {
            mx: self.budget(Role::Mx, raw.mx.as_ref(), default)?,
            submission: self.budget(Role::Submission, raw.submission.as_ref(), default)?,
            submissions: self.budget(Role::Submissions, raw.submissions.as_ref(), default)?,
            web: default,
        };
        let free_space = match &raw.free_space {
            Some(size) => self.size("limits.free_space", size, 0, "0")?,
            None => DEFAULT_FREE_SPACE,
        };
        if session_timeout < command_timeout {
            return Err(self.at_either(
                raw.session_timeout.as_ref(),
                raw.command_timeout.as_ref(),
                format!(
                    "limits.session_timeout ({}s) is shorter than limits.command_timeout \
                     ({}s): expected at least as long",
                    session_timeout.as_secs(),
                    command_timeout.as_secs()
                ),
            ));
        }
        Ok(Limits {
            message_size,
            recipients,
            local_messages_per_hour,
            connections,
            connections_per_ip,
            budgets,
            free_space,
            errors,
            line_length,
            command_timeout,
            data_timeout,
            session_timeout,
            min_data_rate,
        })
    }

    /// `[limits.<role>]`: the role's budget, each key defaulting to `[limits]`.
    fn budget(
        &self,
        role: Role,
        raw: Option<&Spanned<RawBudget>>,
        default: ConnectionBudget,
    ) -> Result<ConnectionBudget, ConfigError> {
        let Some(table) = raw else {
            return Ok(default);
        };
        let name = role.name();
        let raw = table.get_ref();
        let connections = self.count(
            &format!("limits.{name}.connections"),
            raw.connections.as_ref(),
            default.connections,
            1,
            "",
        )?;
        let connections_per_ip = self.count(
            &format!("limits.{name}.connections_per_ip"),
            raw.connections_per_ip.as_ref(),
            default.connections_per_ip,
            1,
            "",
        )?;
        if connections_per_ip > connections {
            let per_ip_key = match raw.connections_per_ip {
                Some(_) => format!("limits.{name}.connections_per_ip"),
                None => "limits.connections_per_ip".to_string(),
            };
            let total_key = match raw.connections {
                Some(_) => format!("limits.{name}.connections"),
                None => "limits.connections".to_string(),
            };
            return Err(self.at_either(
                raw.connections_per_ip.as_ref(),
                raw.connections.as_ref(),
                format!(
                    "{per_ip_key} ({connections_per_ip}) is more than {total_key} \
                     ({connections}) for the {name} listeners: expected at most {connections}"
                ),
            ));
        }
        Ok(ConnectionBudget {
            connections,
            connections_per_ip,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::tests::{err, ok, with};
    use crate::config::{ConnectionBudget, Role};

    fn budget(connections: usize, connections_per_ip: usize) -> ConnectionBudget {
        ConnectionBudget {
            connections,
            connections_per_ip,
        }
    }

    #[test]
    fn each_role_has_a_budget_defaulting_to_limits() {
        let limits = ok(&with("")).limits;
        for role in [Role::Mx, Role::Submission, Role::Submissions] {
            assert_eq!(limits.budget(role), budget(100, 10), "{role:?}");
        }
        assert_eq!(limits.free_space, 100 << 20);
        let limits = ok(&with(
            "[limits]\nconnections = 50\nconnections_per_ip = 5\nfree_space = 0\n\
             [limits.mx]\nconnections = 300\n\
             [limits.submission]\nconnections_per_ip = 2\n\
             [limits.submissions]\nconnections = 8\nconnections_per_ip = 8\n",
        ))
        .limits;
        assert_eq!(limits.budget(Role::Mx), budget(300, 5));
        assert_eq!(limits.budget(Role::Submission), budget(50, 2));
        assert_eq!(limits.budget(Role::Submissions), budget(8, 8));
        assert_eq!(limits.free_space, 0);
        let limits = ok(&with("[limits]\nfree_space = \"1G\"\n")).limits;
        assert_eq!(limits.free_space, 1 << 30);
    }

    #[test]
    fn role_budget_mistakes() {
        let cases = [
            (
                "[limits.mx]\nconnections = 0",
                "tern.toml:15:15: limits.mx.connections 0 is too small: expected at least 1",
            ),
            (
                "[limits.submission]\nconnections = 5",
                "tern.toml:15:15: limits.connections_per_ip (10) is more than \
                 limits.submission.connections (5) for the submission listeners: \
                 expected at most 5",
            ),
            (
                "[limits.submissions]\nconnections_per_ip = 101",
                "tern.toml:15:22: limits.submissions.connections_per_ip (101) is more \
                 than limits.connections (100) for the submissions listeners: \
                 expected at most 100",
            ),
            (
                "[limits.mx]\nconnection = 5",
                "tern.toml:15:1: unknown key \"connection\", expected one of: \
                 connections, connections_per_ip",
            ),
            (
                "[limits.relay]\nconnections = 5",
                "tern.toml:14:9: unknown key \"relay\", expected one of: message_size, \
                 recipients, local_messages_per_hour, connections, connections_per_ip, \
                 errors, line_length, command_timeout, data_timeout, session_timeout, \
                 min_data_rate, free_space, mx, submission, submissions",
            ),
            (
                "[limits]\nfree_space = \"lots\"",
                "tern.toml:15:14: limits.free_space \"lots\" is not a size: expected a \
                 whole number of bytes, optionally followed by K, M or G (powers of 1024; \
                 KiB/MiB/GiB and KB/MB/GB mean the same), e.g. \"25M\"",
            ),
            (
                "[limits]\nfree_space = -1",
                "tern.toml:15:14: limits.free_space -1 is negative: expected at least 0",
            ),
        ];
        for (tables, expected) in cases {
            assert_eq!(err(&with(&format!("{tables}\n"))), expected, "{tables}");
        }
    }

    #[test]
    fn limits_take_sizes_durations_and_counts() {
        let limits = ok(&with(
            "[limits]\nmessage_size = \"10MiB\"\nrecipients = 5\nconnections = 20\n\
             connections_per_ip = 20\nerrors = 3\nline_length = 512\ncommand_timeout = 60\n\
             data_timeout = \"90s\"\nsession_timeout = \"1h30m\"\nmin_data_rate = \"2K\"\n",
        ))
        .limits;
        assert_eq!(limits.message_size, 10 << 20);
        assert_eq!(
            (
                limits.recipients,
                limits.connections,
                limits.connections_per_ip
            ),
            (5, 20, 20)
        );
        assert_eq!((limits.errors, limits.line_length), (3, 512));
        assert_eq!(limits.command_timeout, Duration::from_secs(60));
        assert_eq!(limits.data_timeout, Duration::from_secs(90));
        assert_eq!(limits.session_timeout, Duration::from_secs(5400));
        assert_eq!(limits.min_data_rate, 2048);
        let limits = ok(&with("[limits]\nmessage_size = 2048\nmin_data_rate = 0\n")).limits;
        assert_eq!(limits.message_size, 2048);
        assert_eq!(limits.min_data_rate, 0, "0 turns the minimum rate off");
    }

    #[test]
    fn limit_mistakes() {
        let cases = [
            (
                "message_size = \"25X\"",
                "tern.toml:15:16: limits.message_size \"25X\" is not \
              a size: expected a whole number of bytes, optionally followed by K, M or G \
              (powers of 1024; KiB/MiB/GiB and KB/MB/GB mean the same), e.g. \"25M\"",
            ),
            (
                "message_size = 1000",
                "tern.toml:15:16: limits.message_size 1000 is too small: \
              expected at least 1K (1024 bytes)",
            ),
            (
                "message_size = -5",
                "tern.toml:15:16: limits.message_size -5 is negative: \
              expected at least 1K",
            ),
            (
                "recipients = 0",
                "tern.toml:15:14: limits.recipients 0 is too small: expected \
              at least 1",
            ),
            (
                "errors = -1",
                "tern.toml:15:10: limits.errors -1 is too small: expected at \
              least 1",
            ),
            (
                "line_length = 511",
                "tern.toml:15:15: limits.line_length 511 is too small: \
              expected at least 512 (RFC 5321 §4.5.3.1.4)",
            ),
            (
                "data_timeout = \"5 minutes\"",
                "tern.toml:15:16: limits.data_timeout \
              \"5 minutes\" is not a duration: expected a whole number of seconds, or whole \
              numbers each followed by s, m, h or d, e.g. \"90s\", \"5m\", \"1h30m\"",
            ),
            (
                "command_timeout = 0",
                "tern.toml:15:19: limits.command_timeout 0 is too short: \
              expected at least 1 second",
            ),
            (
                "connections_per_ip = 101",
                "tern.toml:15:22: limits.connections_per_ip (101) \
              is more than limits.connections (100): expected at most 100",
            ),
            (
                "connections = 5",
                "tern.toml:15:15: limits.connections_per_ip (10) is more \
              than limits.connections (5): expected at most 5",
            ),
            (
                "session_timeout = \"4m\"",
                "tern.toml:15:19: limits.session_timeout (240s) is \
              shorter than limits.command_timeout (300s): expected at least as long",
            ),
            (
                "command_timeout = \"1h\"",
                "tern.toml:15:19: limits.session_timeout (1800s) is \
              shorter than limits.command_timeout (3600s): expected at least as long",
            ),
        ];
        for (line, expected) in cases {
            assert_eq!(
                err(&with(&format!("[limits]\n{line}\n"))),
                expected,
                "{line}"
            );
        }
    }
}
