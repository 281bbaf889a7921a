//! Cron schedules evaluated in an explicit time zone.
//!
//! The handbook's jobs are written in local time ("data subject requests: daily 02:00",
//! "retention: weekly Sunday 03:00") and operators read the log in local time, so a
//! schedule is always evaluated in a named [`chrono_tz::Tz`], never in the host's zone.
//! Parsing is delegated to the [`cron`] crate; this module only adds the classic 5-field
//! syntax on top and defines what happens on daylight-saving transition days.
//!
//! # Accepted syntax
//!
//! | form | example | notes |
//! |---|---|---|
//! | 5 fields (Vixie cron) | `0 2 * * *` | `min hour dom mon dow`; seconds become `0`; day of week `0`–`7`, `0` and `7` = Sunday, or `SUN`–`SAT` |
//! | 6 fields (cron crate) | `0 0 2 * * *` | `sec min hour dom mon dow`; passed to the cron crate verbatim |
//! | 7 fields (cron crate) | `0 0 2 * * * 2027` | as above plus a year field |
//! | shorthand | `@hourly`, `@daily`, `@weekly`, `@monthly`, `@yearly` | `@annually` and `@midnight` are accepted as the usual aliases |
//!
//! Two traps are handled on purpose:
//! - In 6/7-field expressions the cron crate numbers days of the week `1`–`7` with
//!   `1` = **Sunday** (Quartz style), unlike 5-field cron. Prefer names (`SUN`, `MON-FRI`)
//!   there. 5-field expressions are translated, so `0 3 * * 0` means Sunday as in crontab(5).
//! - Vixie cron fires when *either* day-of-month or day-of-week matches if both are
//!   restricted; the cron crate requires *both*. A 5-field expression that restricts both
//!   (`0 0 1 * MON`) is therefore rejected instead of silently meaning something else.
//!
//! Interval forms such as `every 5m` are not accepted: `*/5 * * * *` says the same thing
//! in a syntax every operator already reads. Fixed intervals that do not follow the wall
//! clock belong in a `Duration` (humantime) setting, not in a schedule.
//!
//! # Daylight-saving time
//!
//! Matching is done on local wall-clock time; local times are turned into instants the
//! way RFC 5545 (iCalendar, §3.3.5) does it:
//! - **Local time does not exist** (clocks jump forward, e.g. 02:00–03:00 on
//!   2026-03-29 in Europe/Amsterdam): the time is read with the UTC offset in force
//!   *before* the gap, so a daily 02:00 job runs at 03:00 CEST (01:00 UTC) that day and a
//!   02:30 job at 03:30 CEST. A job is never skipped because its hour did not exist.
//! - **Local time happens twice** (clocks go back, e.g. 02:00–03:00 on 2026-10-25):
//!   the job runs once, at the *first* occurrence (02:00 CEST = 00:00 UTC). Exception,
//!   as in Vixie cron: a schedule that fires in every hour of the day (`@hourly`,
//!   `*/5 * * * *`) runs in both occurrences, because it means "every so often", and a
//!   5-minute job must not pause for an hour once a year.

use chrono::{
    DateTime, Duration as ChronoDuration, NaiveDateTime, Offset, TimeZone, Timelike, Utc,
};
use chrono_tz::Tz;
use cron::TimeUnitSpec;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use thiserror::Error;

/// The largest change of UTC offset at one transition that [`Schedule::next_after`]
/// allows for (tzdata's largest current DST shift is 2 h, at Antarctica/Troll).
const MAX_OFFSET_SHIFT: ChronoDuration = ChronoDuration::hours(3);

/// How far back [`offset_before_gap`] looks for a local time that exists; gaps longer
/// than this (Samoa skipped a whole day in 2011) are still handled.
const GAP_PROBE_LIMIT: ChronoDuration = ChronoDuration::hours(50);

/// A parsed cron schedule that remembers the expression it was written as.
///
/// It is a value type for config: it deserialises from the expression string (failing
/// loudly on a bad one) and serialises back to the same string.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Schedule {
    /// The expression as the operator wrote it, for logs and error messages.
    expression: String,
    /// The parsed form, in the cron crate's 6/7-field dialect.
    cron: cron::Schedule,
}

impl PartialEq for Schedule {
    fn eq(&self, other: &Self) -> bool {
        self.expression == other.expression
    }
}

impl Eq for Schedule {}

/// Why a schedule expression was rejected. Every variant names the expression, so a
/// config error can be traced back to the line that holds it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ScheduleError {
    /// The expression has a field count no supported syntax uses.
    #[error(
        "invalid schedule {expression:?}: expected 5, 6 or 7 fields or an @shorthand, found {found} fields"
    )]
    FieldCount {
        /// The expression as written.
        expression: String,
        /// How many whitespace-separated fields it has.
        found: usize,
    },
    /// The day-of-week field of a 5-field expression does not parse.
    #[error("invalid schedule {expression:?}: day of week {field:?}: {reason}")]
    DayOfWeek {
        /// The expression as written.
        expression: String,
        /// The day-of-week field.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A 5-field expression restricts both day of month and day of week, which classic
    /// cron reads as "either" and the cron crate as "both"; rejected to avoid guessing.
    #[error(
        "invalid schedule {expression:?}: restricts both day of month and day of week; \
         crontab(5) would fire on either, this scheduler only on both: use one of them"
    )]
    DayOfMonthAndWeek {
        /// The expression as written.
        expression: String,
    },
    /// The cron crate rejected the expression (bad range, unknown name, ...).
    #[error("invalid schedule {expression:?}: {reason}")]
    Cron {
        /// The expression as written.
        expression: String,
        /// The cron crate's explanation.
        reason: String,
    },
}

impl ScheduleError {
    /// Stable label for metrics and logs.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            Self::FieldCount { .. } => "field_count",
            Self::DayOfWeek { .. } => "day_of_week",
            Self::DayOfMonthAndWeek { .. } => "day_of_month_and_week",
            Self::Cron { .. } => "cron",
        }
    }
}

impl Schedule {
    /// Parses an expression in any of the forms listed in the module documentation.
    pub fn parse(expression: &str) -> Result<Self, ScheduleError> {
        let trimmed = expression.trim();
        let fields: Vec<&str> = trimmed.split_whitespace().collect();
        let cron_text = match fields.as_slice() {
            [single] if single.starts_with('@') => shorthand(single),
            [_, _, _, _, _] => five_field(expression, &fields)?,
            [_, _, _, _, _, _] | [_, _, _, _, _, _, _] => fields.join(" "),
            _ => {
                return Err(ScheduleError::FieldCount {
                    expression: expression.to_owned(),
                    found: fields.len(),
                });
            }
        };
        let cron = cron::Schedule::from_str(&cron_text).map_err(|e| ScheduleError::Cron {
            expression: expression.to_owned(),
            reason: e.to_string(),
        })?;
        Ok(Self {
            expression: expression.to_owned(),
            cron,
        })
    }

    /// The expression as it was written.
    #[must_use]
    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// The first run strictly after `after`, with the schedule read as local time in
    /// `tz` (see the module documentation for daylight-saving days). `None` when the
    /// schedule never fires again (a year field in the past).
    #[must_use]
    pub fn next_after(&self, after: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
        // Local wall time is not monotonic in real time around transitions, and a gap
        // maps later wall times onto earlier instants; so candidates are enumerated from
        // a little before `after`'s wall time until no later candidate can beat the best.
        let every_hour = self.cron.hours().is_all();
        let local_after = after.with_timezone(&tz).naive_local().with_nanosecond(0)?;
        let start = local_after.checked_sub_signed(MAX_OFFSET_SHIFT * 2)?;
        let mut best: Option<DateTime<Utc>> = None;
        // The cron crate enumerates wall times; carried as UTC, which has no gaps or
        // repeats, it yields every matching wall time exactly once.
        for candidate in self.cron.after(&Utc.from_utc_datetime(&start)) {
            let wall = candidate.naive_utc();
            if let Some(b) = best {
                // Invariant: an instant from wall time `w` has local time >= `w`, and two
                // instants whose local times differ by more than the largest offset
                // shift are in the same order as their local times.
                let best_local = b.with_timezone(&tz).naive_local();
                if wall > best_local.checked_add_signed(MAX_OFFSET_SHIFT)? {
                    break;
                }
            }
            for instant in instants_of(wall, tz, every_hour).into_iter().flatten() {
                if instant > after && best.is_none_or(|b| instant < b) {
                    best = Some(instant);
                }
            }
        }
        best
    }

    /// The next `n` runs after `after`, for previews (`sre schedule show`) and tests.
    #[must_use]
    pub fn upcoming(&self, after: DateTime<Utc>, tz: Tz, n: usize) -> Vec<DateTime<Utc>> {
        let mut out = Vec::with_capacity(n);
        let mut cursor = after;
        while out.len() < n {
            let Some(next) = self.next_after(cursor, tz) else {
                break;
            };
            out.push(next);
            cursor = next;
        }
        out
    }
}

/// The instants at which wall time `wall` in `tz` is due (see the module docs).
fn instants_of(wall: NaiveDateTime, tz: Tz, every_hour: bool) -> [Option<DateTime<Utc>>; 2] {
    match tz.from_local_datetime(&wall) {
        chrono::LocalResult::Single(t) => [Some(t.with_timezone(&Utc)), None],
        chrono::LocalResult::Ambiguous(a, b) => {
            let (first, second) = if a <= b { (a, b) } else { (b, a) };
            let second = every_hour.then(|| second.with_timezone(&Utc));
            [Some(first.with_timezone(&Utc)), second]
        }
        chrono::LocalResult::None => {
            let instant = offset_before_gap(wall, tz).and_then(|offset_secs| {
                wall.checked_sub_signed(ChronoDuration::seconds(i64::from(offset_secs)))
                    .map(|utc| Utc.from_utc_datetime(&utc))
            });
            [instant, None]
        }
    }
}

/// The UTC offset (seconds east) in force just before the gap that swallowed `wall`.
fn offset_before_gap(wall: NaiveDateTime, tz: Tz) -> Option<i32> {
    // Tz offsets change in steps of at least 15 minutes in modern tzdata, so stepping back
    // in 15-minute steps finds a wall time just before the gap, still in the old offset.
    let step = ChronoDuration::minutes(15);
    let mut probe = wall;
    let mut walked = ChronoDuration::zero();
    while walked < GAP_PROBE_LIMIT {
        probe = probe.checked_sub_signed(step)?;
        walked += step;
        if let Some(t) = tz.from_local_datetime(&probe).latest() {
            return Some(t.offset().fix().local_minus_utc());
        }
    }
    None
}

/// Maps Vixie's aliases onto the shorthands the cron crate knows.
fn shorthand(word: &str) -> String {
    match word.to_ascii_lowercase().as_str() {
        "@annually" => "@yearly".to_owned(),
        "@midnight" => "@daily".to_owned(),
        other => other.to_owned(),
    }
}

/// Rewrites a crontab(5) expression into the cron crate's 6-field form.
fn five_field(expression: &str, fields: &[&str]) -> Result<String, ScheduleError> {
    let [minute, hour, dom, month, dow] = fields else {
        return Err(ScheduleError::FieldCount {
            expression: expression.to_owned(),
            found: fields.len(),
        });
    };
    let days = days_of_week(dow).map_err(|reason| ScheduleError::DayOfWeek {
        expression: expression.to_owned(),
        field: (*dow).to_owned(),
        reason,
    })?;
    let weekday_restricted = days.iter().any(|d| !d);
    let monthday_restricted = !matches!(*dom, "*" | "?");
    if weekday_restricted && monthday_restricted {
        return Err(ScheduleError::DayOfMonthAndWeek {
            expression: expression.to_owned(),
        });
    }
    let dow_text = if weekday_restricted {
        DAY_NAMES
            .iter()
            .zip(days)
            .filter_map(|(name, on)| on.then_some(*name))
            .collect::<Vec<_>>()
            .join(",")
    } else {
        "*".to_owned()
    };
    // The cron crate's day-of-month field only accepts `?` when day of week is used.
    let dom = if *dom == "?" { "*" } else { dom };
    Ok(format!("0 {minute} {hour} {dom} {month} {dow_text}"))
}

/// Day names in crontab(5) numbering: index 0 = Sunday.
const DAY_NAMES: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

/// Expands a crontab(5) day-of-week field into a set of days (index 0 = Sunday).
///
/// Expanded here instead of renumbered because the cron crate numbers days from Sunday = 1
/// and cannot express crontab's `5-7` (Friday to Sunday) as a range.
fn days_of_week(field: &str) -> Result<[bool; 7], String> {
    let mut days = [false; 7];
    for item in field.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => {
                let step: usize = s
                    .parse()
                    .ok()
                    .filter(|&s| s > 0)
                    .ok_or_else(|| format!("step {s:?} is not a positive number"))?;
                (r, step)
            }
            None => (item, 1),
        };
        let (low, high) = match range {
            "*" | "?" => (0, 6),
            _ => match range.split_once('-') {
                Some((a, b)) => (day_number(a)?, day_number(b)?),
                // `MON/2` means "from Monday on, every second day", as in cronie.
                None if step > 1 => (day_number(range)?, 7),
                None => {
                    let d = day_number(range)?;
                    (d, d)
                }
            },
        };
        if low > high {
            return Err(format!("range {range:?} runs backwards"));
        }
        for d in (low..=high).step_by(step) {
            days[d % 7] = true;
        }
    }
    Ok(days)
}

/// A crontab(5) day: `0`–`7` (0 and 7 are Sunday) or an English name.
fn day_number(text: &str) -> Result<usize, String> {
    const FULL: [&str; 7] = [
        "sunday",
        "monday",
        "tuesday",
        "wednesday",
        "thursday",
        "friday",
        "saturday",
    ];
    if let Ok(n) = text.parse::<usize>() {
        return if n <= 7 {
            Ok(n)
        } else {
            Err(format!("{n} is not a day of the week (0-7)"))
        };
    }
    let lower = text.to_ascii_lowercase();
    FULL.iter()
        .position(|full| {
            lower.len() >= 3 && full.starts_with(&lower) && (lower.len() == 3 || lower == *full)
        })
        .ok_or_else(|| format!("{text:?} is not a day of the week"))
}

impl FromStr for Schedule {
    type Err = ScheduleError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<String> for Schedule {
    type Error = ScheduleError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<Schedule> for String {
    fn from(s: Schedule) -> Self {
        s.expression
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.expression)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::Europe::Amsterdam;
    use chrono_tz::UTC as TZ_UTC;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).map_or_else(
            |e| panic!("bad test timestamp {s}: {e}"),
            |d| d.with_timezone(&Utc),
        )
    }

    /// Asserts the next runs of `expr` in `tz` after `after`.
    fn check(expr: &str, tz: Tz, after: &str, expect: &[&str]) {
        let s = Schedule::parse(expr).unwrap_or_else(|e| panic!("{expr}: {e}"));
        let got = s.upcoming(utc(after), tz, expect.len());
        let want: Vec<_> = expect.iter().map(|e| utc(e)).collect();
        assert_eq!(got, want, "{expr} in {tz} after {after}");
    }

    #[test]
    fn seed_schedules_in_utc() {
        let cases: &[(&str, &str, &[&str])] = &[
            // daily 02:00 (data subject requests)
            (
                "0 2 * * *",
                "2026-03-28T12:00:00Z",
                &["2026-03-29T02:00:00Z", "2026-03-30T02:00:00Z"],
            ),
            (
                "0 0 2 * * *",
                "2026-03-28T12:00:00Z",
                &["2026-03-29T02:00:00Z"],
            ),
            // weekly Sunday 03:00 (retention); 2026-03-29 is a Sunday
            (
                "0 3 * * 0",
                "2026-03-23T00:00:00Z",
                &["2026-03-29T03:00:00Z", "2026-04-05T03:00:00Z"],
            ),
            (
                "0 3 * * 7",
                "2026-03-23T00:00:00Z",
                &["2026-03-29T03:00:00Z"],
            ),
            (
                "0 3 * * SUN",
                "2026-03-23T00:00:00Z",
                &["2026-03-29T03:00:00Z"],
            ),
            (
                "0 0 3 * * SUN",
                "2026-03-23T00:00:00Z",
                &["2026-03-29T03:00:00Z"],
            ),
            // monthly, 1st at 04:00 (audit log cleanup)
            (
                "0 4 1 * *",
                "2026-03-15T00:00:00Z",
                &["2026-04-01T04:00:00Z", "2026-05-01T04:00:00Z"],
            ),
            (
                "@monthly",
                "2026-03-15T00:00:00Z",
                &["2026-04-01T00:00:00Z"],
            ),
            // hourly (stats refresh)
            (
                "@hourly",
                "2026-03-15T10:59:59Z",
                &["2026-03-15T11:00:00Z", "2026-03-15T12:00:00Z"],
            ),
            (
                "0 * * * *",
                "2026-03-15T11:00:00Z",
                &["2026-03-15T12:00:00Z"],
            ),
            // every 5 minutes
            (
                "*/5 * * * *",
                "2026-03-15T10:57:30Z",
                &["2026-03-15T11:00:00Z", "2026-03-15T11:05:00Z"],
            ),
            ("@daily", "2026-03-15T00:00:00Z", &["2026-03-16T00:00:00Z"]),
            (
                "@midnight",
                "2026-03-15T00:00:00Z",
                &["2026-03-16T00:00:00Z"],
            ),
            ("@weekly", "2026-03-23T00:00:00Z", &["2026-03-29T00:00:00Z"]),
            // 7 fields with a year
            (
                "0 0 4 1 * * 2027",
                "2026-03-15T00:00:00Z",
                &["2027-01-01T04:00:00Z"],
            ),
        ];
        for (expr, after, expect) in cases {
            check(expr, TZ_UTC, after, expect);
        }
    }

    #[test]
    fn seed_schedules_in_amsterdam_on_ordinary_days() {
        let cases: &[(&str, &str, &[&str])] = &[
            // CET (+01) in winter, CEST (+02) in summer
            (
                "0 2 * * *",
                "2026-01-10T12:00:00Z",
                &["2026-01-11T01:00:00Z"],
            ),
            (
                "0 2 * * *",
                "2026-07-10T12:00:00Z",
                &["2026-07-11T00:00:00Z"],
            ),
            (
                "0 3 * * SUN",
                "2026-07-06T00:00:00Z",
                &["2026-07-12T01:00:00Z"],
            ),
            (
                "0 4 1 * *",
                "2026-03-15T00:00:00Z",
                &["2026-04-01T02:00:00Z", "2026-05-01T02:00:00Z"],
            ),
            (
                "0 4 1 * *",
                "2026-01-15T00:00:00Z",
                &["2026-02-01T03:00:00Z"],
            ),
            ("@hourly", "2026-07-10T10:30:00Z", &["2026-07-10T11:00:00Z"]),
        ];
        for (expr, after, expect) in cases {
            check(expr, Amsterdam, after, expect);
        }
    }

    #[test]
    fn spring_forward_runs_missing_local_times_with_the_old_offset() {
        // 2026-03-29: 02:00 CET jumps to 03:00 CEST (01:00 UTC).
        let cases: &[(&str, &str, &[&str])] = &[
            // 02:00 does not exist: runs at 03:00 CEST = 01:00 UTC, then 02:00 CEST again.
            (
                "0 2 * * *",
                "2026-03-28T12:00:00Z",
                &["2026-03-29T01:00:00Z", "2026-03-30T00:00:00Z"],
            ),
            (
                "30 2 * * *",
                "2026-03-28T12:00:00Z",
                &["2026-03-29T01:30:00Z", "2026-03-30T00:30:00Z"],
            ),
            // The day before still runs at 02:00 CET.
            (
                "0 2 * * *",
                "2026-03-27T12:00:00Z",
                &["2026-03-28T01:00:00Z", "2026-03-29T01:00:00Z"],
            ),
            // 03:00 exists (it is the first CEST hour), on a Sunday.
            (
                "0 3 * * 0",
                "2026-03-28T00:00:00Z",
                &["2026-03-29T01:00:00Z", "2026-04-05T01:00:00Z"],
            ),
            // Hourly keeps running once per real hour, with no duplicate at 01:00 UTC.
            (
                "@hourly",
                "2026-03-28T23:30:00Z",
                &[
                    "2026-03-29T00:00:00Z",
                    "2026-03-29T01:00:00Z",
                    "2026-03-29T02:00:00Z",
                ],
            ),
            // Every 5 minutes runs straight through the jump.
            (
                "*/5 * * * *",
                "2026-03-29T00:50:00Z",
                &[
                    "2026-03-29T00:55:00Z",
                    "2026-03-29T01:00:00Z",
                    "2026-03-29T01:05:00Z",
                ],
            ),
            (
                "0 4 1 * *",
                "2026-03-15T00:00:00Z",
                &["2026-04-01T02:00:00Z"],
            ),
        ];
        for (expr, after, expect) in cases {
            check(expr, Amsterdam, after, expect);
        }
    }

    #[test]
    fn fall_back_runs_repeated_local_times_once_unless_hourly() {
        // 2026-10-25: 03:00 CEST (01:00 UTC) goes back to 02:00 CET; 02:xx happens twice.
        let cases: &[(&str, &str, &[&str])] = &[
            // Daily 02:00 runs once, at the first 02:00 (CEST), then 02:00 CET next day.
            (
                "0 2 * * *",
                "2026-10-24T12:00:00Z",
                &["2026-10-25T00:00:00Z", "2026-10-26T01:00:00Z"],
            ),
            // Asked between the two occurrences, it does not run again.
            (
                "0 2 * * *",
                "2026-10-25T00:30:00Z",
                &["2026-10-26T01:00:00Z"],
            ),
            // Weekly Sunday 03:00 is unambiguous (CET) that day.
            (
                "0 3 * * SUN",
                "2026-10-24T00:00:00Z",
                &["2026-10-25T02:00:00Z", "2026-11-01T02:00:00Z"],
            ),
            // Hourly runs in both 02:00s.
            (
                "@hourly",
                "2026-10-24T23:30:00Z",
                &[
                    "2026-10-25T00:00:00Z",
                    "2026-10-25T01:00:00Z",
                    "2026-10-25T02:00:00Z",
                    "2026-10-25T03:00:00Z",
                ],
            ),
            // Every 5 minutes does not pause for the repeated hour.
            (
                "*/5 * * * *",
                "2026-10-25T00:50:00Z",
                &[
                    "2026-10-25T00:55:00Z",
                    "2026-10-25T01:00:00Z",
                    "2026-10-25T01:05:00Z",
                ],
            ),
            (
                "*/5 * * * *",
                "2026-10-25T01:52:00Z",
                &["2026-10-25T01:55:00Z", "2026-10-25T02:00:00Z"],
            ),
        ];
        for (expr, after, expect) in cases {
            check(expr, Amsterdam, after, expect);
        }
    }

    #[test]
    fn half_hour_zones_shift_hourly_runs() {
        check(
            "@hourly",
            chrono_tz::Asia::Kolkata,
            "2026-03-15T10:00:00Z",
            &["2026-03-15T10:30:00Z"],
        );
    }

    #[test]
    fn next_after_is_strictly_after() {
        check(
            "0 2 * * *",
            TZ_UTC,
            "2026-03-29T02:00:00Z",
            &["2026-03-30T02:00:00Z"],
        );
        check(
            "*/5 * * * *",
            TZ_UTC,
            "2026-03-29T02:00:00.5Z",
            &["2026-03-29T02:05:00Z"],
        );
    }

    #[test]
    fn five_field_days_of_week_follow_crontab_numbering() {
        // 2026-03-23 is a Monday.
        let cases: &[(&str, &[&str])] = &[
            (
                "0 0 * * 1-5",
                &[
                    "2026-03-24T00:00:00Z",
                    "2026-03-25T00:00:00Z",
                    "2026-03-26T00:00:00Z",
                    "2026-03-27T00:00:00Z",
                    "2026-03-30T00:00:00Z",
                ],
            ),
            (
                "0 0 * * 5-7",
                &[
                    "2026-03-27T00:00:00Z",
                    "2026-03-28T00:00:00Z",
                    "2026-03-29T00:00:00Z",
                    "2026-04-03T00:00:00Z",
                ],
            ),
            (
                "0 0 * * mon,wed",
                &["2026-03-25T00:00:00Z", "2026-03-30T00:00:00Z"],
            ),
            (
                "0 0 * * */3",
                &[
                    "2026-03-25T00:00:00Z",
                    "2026-03-28T00:00:00Z",
                    "2026-03-29T00:00:00Z",
                ],
            ),
            (
                "0 0 * * 0-6",
                &["2026-03-24T00:00:00Z", "2026-03-25T00:00:00Z"],
            ),
        ];
        for (expr, expect) in cases {
            check(expr, TZ_UTC, "2026-03-23T00:00:00Z", expect);
        }
    }

    #[test]
    fn invalid_expressions_name_expression_and_reason() {
        let cases: &[(&str, &str)] = &[
            ("0 25 * * *", "cron"),
            ("not a schedule", "field_count"),
            ("* * *", "field_count"),
            ("", "field_count"),
            ("0 0 * * 8", "day_of_week"),
            ("0 0 * * 5-1", "day_of_week"),
            ("0 0 * * funday", "day_of_week"),
            ("0 0 * * */0", "day_of_week"),
            ("0 0 1 * MON", "day_of_month_and_week"),
            ("@fortnightly", "cron"),
            ("0 0 0 31 2 * x", "cron"),
        ];
        for (expr, kind) in cases {
            let err = Schedule::parse(expr)
                .err()
                .unwrap_or_else(|| panic!("{expr:?} parsed"));
            assert_eq!(err.kind(), *kind, "{expr:?}: {err}");
            assert!(
                err.to_string().contains(&format!("{expr:?}")),
                "{err} does not name {expr:?}"
            );
        }
    }

    #[test]
    fn schedules_that_never_fire_again_return_none() {
        let s = Schedule::parse("0 0 0 1 1 * 2020").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.next_after(utc("2026-01-01T00:00:00Z"), TZ_UTC), None);
        assert!(
            s.upcoming(utc("2026-01-01T00:00:00Z"), Amsterdam, 3)
                .is_empty()
        );
    }

    proptest::proptest! {
        /// Across 2026 (both DST transitions included), every seed schedule fires
        /// strictly later, within its period plus one DST hour, and asking again from
        /// just before the answer gives the same answer (nothing skipped in between).
        #[test]
        fn next_run_is_later_bounded_and_stable(
            // Half the cases around 2026-03-29 (day 87) and 2026-10-25 (day 297).
            secs in proptest::prop_oneof![
                0i64..(365 * 86_400),
                (86i64 * 86_400)..(89 * 86_400),
                (296i64 * 86_400)..(299 * 86_400),
            ], which in 0usize..5, in_utc: bool,
        ) {
            let seeds = [
                ("0 2 * * *", 86_400 + 3_600),
                ("0 3 * * 0", 7 * 86_400 + 3_600),
                ("0 4 1 * *", 31 * 86_400 + 3_600),
                ("@hourly", 3_600),
                ("*/5 * * * *", 300),
            ];
            let (expr, bound) = seeds[which];
            let tz = if in_utc { TZ_UTC } else { Amsterdam };
            let s = Schedule::parse(expr).unwrap_or_else(|e| panic!("{e}"));
            let after = utc("2026-01-01T00:00:00Z") + ChronoDuration::seconds(secs);
            let next = s.next_after(after, tz);
            proptest::prop_assert!(next.is_some());
            let next = next.unwrap_or(after);
            proptest::prop_assert!(next > after);
            proptest::prop_assert!(next - after <= ChronoDuration::seconds(bound), "{} after {}", next, after);
            let just_before = next - ChronoDuration::seconds(1);
            if just_before > after {
                proptest::prop_assert_eq!(s.next_after(just_before, tz), Some(next));
            }
        }
    }

    #[test]
    fn serde_round_trips_the_expression_and_rejects_bad_ones() {
        let s: Schedule = serde_json::from_str("\"0 2 * * *\"").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.expression(), "0 2 * * *");
        assert_eq!(
            serde_json::to_string(&s).ok().as_deref(),
            Some("\"0 2 * * *\"")
        );
        let err = serde_json::from_str::<Schedule>("\"0 2 * *\"")
            .err()
            .map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("0 2 * *")));
    }
}
