//! Bandwidth limits by day and time of day ("Mon-Fri 08:00-18:00 2MB/s"), read in local
//! wall-clock time, and the task that moves the engine's [`Throttle`] to the rule in force at each
//! boundary, so running uploads change pace on the minute.

use std::fmt;
use std::num::NonZeroU64;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Datelike, Local, LocalResult, NaiveDateTime, NaiveTime, TimeDelta, TimeZone, Timelike};
use chrono::{Weekday, WeekdaySet};
use serde::{Deserialize, Serialize};
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::transfer::Throttle;

/// The shape of a rule, shown when a rule is missing a part.
const RULE_FORM: &str = "write each rule as DAYS START-END RATE, e.g. \"Mon-Fri 08:00-18:00 2MB/s\"";

const SECONDS_PER_DAY: u32 = 24 * 60 * 60;

/// Boundaries are looked for this far ahead. The rules repeat every week, so a rule in force
/// that has not changed seven days on never does; the eighth day is margin.
const LOOKAHEAD_DAYS: i64 = 8;

/// Longest the runner sleeps without reading the clock: a clock set by hand, a new time zone or
/// a daylight-saving shift is noticed within the hour.
const LONGEST_SLEEP: Duration = Duration::from_secs(60 * 60);

/// The units a rate may be written in (any case), with their size in bytes. The canonical form
/// picks among the first [`BYTE_UNITS`]; a rate written in bits is shown back in bytes.
const RATE_UNITS: [(&str, u64); 10] = [
    ("B/s", 1),
    ("KB/s", 1_000),
    ("MB/s", 1_000_000),
    ("GB/s", 1_000_000_000),
    ("KiB/s", 1 << 10),
    ("MiB/s", 1 << 20),
    ("GiB/s", 1 << 30),
    ("kbit/s", 1_000 / 8),
    ("Mbit/s", 1_000_000 / 8),
    ("Gbit/s", 1_000_000_000 / 8),
];
const BYTE_UNITS: usize = 7;

const WEEK: [Weekday; 7] =
    [Weekday::Mon, Weekday::Tue, Weekday::Wed, Weekday::Thu, Weekday::Fri, Weekday::Sat, Weekday::Sun];

/// Bandwidth rules by day and time of local wall-clock time. Where rules overlap, the first
/// listed wins, so a narrow rule goes before a broad one ("Fri 16:00-18:00 unlimited" before
/// "weekdays 08:00-18:00 2MB/s"). Outside every rule the base limit applies (the transfer
/// settings' `bandwidth_limit`).
///
/// On the command line the rules are separated by `;`; in the settings file they are an array of
/// strings: `["Mon-Fri 08:00-18:00 2MB/s", "Sat,Sun 10:00-12:00 500KB/s"]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, ts_rs::TS)]
#[ts(export, as = "Vec<String>")]
pub struct BandwidthSchedule {
    rules: Vec<ScheduleRule>,
}

/// The limit a rule sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rate {
    /// No limit while the rule is in force, whatever the base limit.
    Unlimited,
    BytesPerSecond(NonZeroU64),
}

/// A rule that does not parse, with what to write instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bandwidth rule {rule:?}: {problem}")]
pub struct ScheduleError {
    rule: String,
    problem: String,
}

impl From<ScheduleError> for crate::Error {
    fn from(error: ScheduleError) -> Self {
        crate::Error::InvalidSettings(error.to_string())
    }
}

/// On `days`, from `start` until `end` (seconds after midnight, `end` up to 24:00), at `rate`.
/// An `end` at or before `start` runs past midnight; the window belongs to the day it starts on.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ScheduleRule {
    days: WeekdaySet,
    start: u32,
    end: u32,
    rate: Rate,
}

impl BandwidthSchedule {
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The rate of the first rule in force at `at`; `None` when no rule is, and the base limit
    /// applies. A window includes its start and excludes its end.
    pub fn rate_at(&self, at: NaiveDateTime) -> Option<Rate> {
        self.rule_in_force(at).map(|index| self.rules[index].rate)
    }

    /// The next moment after `at` at which another rule (or none) comes into force, within the
    /// next eight days; `None` when the rule in force at `at` never changes.
    pub fn next_change_after(&self, at: NaiveDateTime) -> Option<NaiveDateTime> {
        let in_force = self.rule_in_force(at);
        self.boundaries_after(at).into_iter().find(|&boundary| self.rule_in_force(boundary) != in_force)
    }

    /// The limit at `at` and how long it lasts, for people: "2 MB/s until 18:00 (Mon-Fri
    /// 08:00-18:00)", or "unlimited until Mon 08:00" when the base limit applies.
    pub fn describe_now(&self, base_limit: u64, at: NaiveDateTime) -> String {
        let rule = self.rule_in_force(at).map(|index| &self.rules[index]);
        let mut text = human_rate(self.limit_at(base_limit, at));
        if let Some(change) = self.next_change_after(at) {
            let clock = clock(change.num_seconds_from_midnight());
            if change.date() == at.date() {
                text.push_str(&format!(" until {clock}"));
            } else {
                text.push_str(&format!(" until {} {clock}", change.weekday()));
            }
        }
        if let Some(rule) = rule {
            text.push_str(&format!(" ({})", rule.window()));
        }
        text
    }

    /// The limit for the throttle at `at`, 0 meaning none.
    fn limit_at(&self, base_limit: u64, at: NaiveDateTime) -> u64 {
        self.rate_at(at).map_or(base_limit, Rate::as_throttle_rate)
    }

    fn rule_in_force(&self, at: NaiveDateTime) -> Option<usize> {
        self.rules.iter().position(|rule| rule.covers(at))
    }

    /// Every moment after `at`, up to [`LOOKAHEAD_DAYS`] on, at which some rule starts or ends,
    /// in order.
    fn boundaries_after(&self, at: NaiveDateTime) -> Vec<NaiveDateTime> {
        let horizon = at.checked_add_signed(TimeDelta::days(LOOKAHEAD_DAYS)).unwrap_or(NaiveDateTime::MAX);
        let midnight = at.date().and_time(NaiveTime::MIN);
        let mut boundaries = Vec::new();
        // From yesterday, whose windows past midnight end today.
        for day_offset in -1..=LOOKAHEAD_DAYS {
            let Some(day) = midnight.checked_add_signed(TimeDelta::days(day_offset)) else { continue };
            for rule in self.rules.iter().filter(|rule| rule.days.contains(day.weekday())) {
                let (start, end) = rule.span();
                for second in [start, end] {
                    let boundary = day.checked_add_signed(TimeDelta::seconds(second.into()));
                    boundaries.extend(boundary.filter(|&boundary| boundary > at && boundary <= horizon));
                }
            }
        }
        boundaries.sort_unstable();
        boundaries.dedup();
        boundaries
    }
}

impl ScheduleRule {
    /// Start and end in seconds from the midnight of a day the rule names; the end is past
    /// 24:00 for a window that runs past midnight.
    fn span(&self) -> (u32, u32) {
        if self.start < self.end {
            (self.start, self.end)
        } else {
            (self.start, self.end + SECONDS_PER_DAY)
        }
    }

    fn covers(&self, at: NaiveDateTime) -> bool {
        let (start, end) = self.span();
        // Boundaries fall on whole seconds, so the second `at` is in decides.
        let second = at.num_seconds_from_midnight();
        let today = at.weekday();
        (self.days.contains(today) && (start..end).contains(&second))
            || (self.days.contains(today.pred()) && (start..end).contains(&(second + SECONDS_PER_DAY)))
    }

    /// The days and times, without the rate: "Mon-Fri 08:00-18:00".
    fn window(&self) -> String {
        format!("{} {}-{}", DaysText(self.days), clock(self.start), clock(self.end))
    }
}

impl Rate {
    /// In the terms of [`Throttle::set_rate`], where 0 means no limit.
    pub fn as_throttle_rate(self) -> u64 {
        match self {
            Rate::Unlimited => 0,
            Rate::BytesPerSecond(bytes) => bytes.get(),
        }
    }
}

impl FromStr for BandwidthSchedule {
    type Err = ScheduleError;

    /// Rules separated by `;`; an empty text is an empty schedule.
    fn from_str(text: &str) -> Result<Self, ScheduleError> {
        let rules = text.split(';').filter(|rule| !rule.trim().is_empty()).map(str::parse).collect::<Result<_, _>>()?;
        Ok(BandwidthSchedule { rules })
    }
}

impl Serialize for BandwidthSchedule {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.rules.iter().map(ToString::to_string))
    }
}

impl<'de> Deserialize<'de> for BandwidthSchedule {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let rules = Vec::<String>::deserialize(deserializer)?;
        let rules =
            rules.iter().map(|rule| rule.parse()).collect::<Result<_, _>>().map_err(serde::de::Error::custom)?;
        Ok(BandwidthSchedule { rules })
    }
}

/// The canonical form, which parses back to the same schedule.
impl fmt::Display for BandwidthSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, rule) in self.rules.iter().enumerate() {
            if index > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{rule}")?;
        }
        Ok(())
    }
}

impl FromStr for ScheduleRule {
    type Err = ScheduleError;

    fn from_str(text: &str) -> Result<Self, ScheduleError> {
        let invalid = |problem: String| ScheduleError { rule: text.trim().to_owned(), problem };
        // People copy times with an en dash ("8:00–18:00"), as the issue itself did.
        let text_with_hyphens = text.replace('–', "-");
        let words: Vec<&str> = text_with_hyphens.split_whitespace().collect();
        // Days never start with a digit and times always do; spaces inside the days ("Sat, Sun")
        // or the rate ("2 MB/s") are let be.
        let Some(times_at) = words.iter().position(|word| word.starts_with(|c: char| c.is_ascii_digit())) else {
            return Err(invalid(format!("it has no times; {RULE_FORM}")));
        };
        if times_at == 0 {
            return Err(invalid(format!("it names no days; {RULE_FORM}")));
        }
        let days = parse_days(&words[..times_at].concat()).map_err(invalid)?;
        let (start, end) = parse_window(words[times_at]).map_err(invalid)?;
        let rate = words[times_at + 1..].concat();
        if rate.is_empty() {
            return Err(invalid(format!("it has no rate; {RULE_FORM}")));
        }
        let rate = parse_rate(&rate).map_err(invalid)?;
        Ok(ScheduleRule { days, start, end, rate })
    }
}

impl fmt::Display for ScheduleRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.window(), self.rate)
    }
}

/// The canonical spelling: the shortest exact one among the byte units ("2MB/s", "1.5MiB/s").
impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bytes = match self {
            Rate::Unlimited => return f.write_str("unlimited"),
            Rate::BytesPerSecond(bytes) => u128::from(bytes.get()),
        };
        let mut shortest = format!("{bytes}B/s");
        for &(unit, size) in &RATE_UNITS[1..BYTE_UNITS] {
            let thousandths = bytes * 1000;
            if thousandths % u128::from(size) == 0 {
                let spelled = format!("{}{unit}", thousandths_as_decimal(thousandths / u128::from(size)));
                if spelled.len() < shortest.len() {
                    shortest = spelled;
                }
            }
        }
        f.write_str(&shortest)
    }
}

/// "Mon-Fri", "Sat,Sun", "Fri-Mon", "Mon,Wed-Fri", "daily".
struct DaysText(WeekdaySet);

impl fmt::Display for DaysText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let days = self.0;
        // Walking the week from the day after the last one out keeps a run across Sunday-Monday
        // in one piece ("Fri-Mon") and otherwise starts on Monday.
        let Some(absent) = WEEK.into_iter().rev().find(|&day| !days.contains(day)) else {
            return f.write_str("daily");
        };
        let mut runs: Vec<(Weekday, Weekday)> = Vec::new();
        let mut day = absent;
        for _ in 0..7 {
            day = day.succ();
            if !days.contains(day) {
                continue;
            }
            match runs.last_mut() {
                Some((_, last)) if last.succ() == day => *last = day,
                _ => runs.push((day, day)),
            }
        }
        for (index, &(first, last)) in runs.iter().enumerate() {
            if index > 0 {
                f.write_str(",")?;
            }
            match last.days_since(first) {
                0 => write!(f, "{first}")?,
                1 => write!(f, "{first},{last}")?,
                _ => write!(f, "{first}-{last}")?,
            }
        }
        Ok(())
    }
}

fn parse_days(text: &str) -> Result<WeekdaySet, String> {
    let mut days = WeekdaySet::EMPTY;
    for item in text.split(',') {
        let unknown = || {
            format!(
                "the days {item:?} are not understood; use names (Mon), ranges (Mon-Fri), lists (Sat,Sun), \
                 weekdays, weekends or daily"
            )
        };
        let named = match item.to_ascii_lowercase().as_str() {
            "weekdays" => {
                WeekdaySet::from_array([Weekday::Mon, Weekday::Tue, Weekday::Wed, Weekday::Thu, Weekday::Fri])
            }
            "weekends" => WeekdaySet::from_array([Weekday::Sat, Weekday::Sun]),
            "daily" => WeekdaySet::ALL,
            lower => match lower.split_once('-') {
                Some((first, last)) => {
                    let (first, last) = (day_named(first).ok_or_else(unknown)?, day_named(last).ok_or_else(unknown)?);
                    // Ranges may wrap around the week: Fri-Mon is Friday to Monday.
                    let mut range = WeekdaySet::single(first);
                    let mut day = first;
                    while day != last {
                        day = day.succ();
                        range.insert(day);
                    }
                    range
                }
                None => WeekdaySet::single(day_named(lower).ok_or_else(unknown)?),
            },
        };
        days = days.union(named);
    }
    Ok(days)
}

fn day_named(lowercase: &str) -> Option<Weekday> {
    Some(match lowercase {
        "mon" | "monday" => Weekday::Mon,
        "tue" | "tues" | "tuesday" => Weekday::Tue,
        "wed" | "wednesday" => Weekday::Wed,
        "thu" | "thur" | "thurs" | "thursday" => Weekday::Thu,
        "fri" | "friday" => Weekday::Fri,
        "sat" | "saturday" => Weekday::Sat,
        "sun" | "sunday" => Weekday::Sun,
        _ => return None,
    })
}

/// `START-END` as seconds after midnight.
fn parse_window(window: &str) -> Result<(u32, u32), String> {
    let malformed = || format!("the times must look like 08:00-18:00 (24-hour, seconds optional), not {window:?}");
    let (start, end) = window.split_once('-').ok_or_else(malformed)?;
    let (start, end) =
        (seconds_after_midnight(start).ok_or_else(malformed)?, seconds_after_midnight(end).ok_or_else(malformed)?);
    let (start, end) = (start?, end?);
    if start == SECONDS_PER_DAY {
        return Err("a window cannot start at 24:00; start it at 00:00 of the next day".to_owned());
    }
    if start == end {
        return Err(format!("the window {window} is empty; for the whole day write 00:00-24:00"));
    }
    Ok((start, end))
}

/// `H:MM`, `HH:MM` or `HH:MM:SS` as seconds after midnight, up to 24:00. `None` when the text
/// is not written as a time, an error when it is but names no time of day ("25:00").
fn seconds_after_midnight(clock: &str) -> Option<Result<u32, String>> {
    let fields: Vec<&str> = clock.split(':').collect();
    let written_as_time = matches!(fields.len(), 2 | 3)
        && (1..=2).contains(&fields[0].len())
        && fields[1..].iter().all(|field| field.len() == 2)
        && fields.iter().all(|field| field.bytes().all(|b| b.is_ascii_digit()));
    if !written_as_time {
        return None;
    }
    let [hours, minutes, seconds] = [0, 1, 2].map(|index| {
        fields.get(index).map_or(0, |field| field.bytes().fold(0, |value, digit| value * 10 + u32::from(digit - b'0')))
    });
    if hours > 24 || minutes > 59 || seconds > 59 || (hours == 24 && minutes + seconds > 0) {
        return Some(Err(format!("{clock:?} is not a time of day; times run from 00:00 to 24:00")));
    }
    Some(Ok(hours * 3600 + minutes * 60 + seconds))
}

fn parse_rate(text: &str) -> Result<Rate, String> {
    if text.eq_ignore_ascii_case("unlimited") {
        return Ok(Rate::Unlimited);
    }
    let number_ends = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    let (number, unit) = text.split_at(number_ends);
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() || fraction.contains('.') {
        return Err(format!("the rate must be a number and a unit, such as 2MB/s or unlimited, not {text:?}"));
    }
    let significant = format!("{whole}{fraction}");
    let significant = significant.trim_start_matches('0');
    if significant.is_empty() {
        // `--bandwidth-limit 0` means no limit, so a 0 here is most likely meant the same way; a
        // rate of 0 would instead stall uploads for as long as the rule is in force.
        return Err(format!("a rate of {text:?} would stop uploads; for no limit write unlimited"));
    }
    // "Mb/s" reads as megabits to some and megabytes to others: an 8-fold mistake either way.
    if let [prefix @ (b'K' | b'M' | b'G'), b'b', b'/', b's' | b'S'] = unit.as_bytes() {
        let prefix = char::from(*prefix);
        return Err(format!(
            "{unit:?} could mean bytes or bits; write {prefix}B/s for bytes or {prefix}bit/s for bits"
        ));
    }
    let Some(&(_, size)) = RATE_UNITS.iter().find(|(name, _)| name.eq_ignore_ascii_case(unit)) else {
        let units: Vec<&str> = RATE_UNITS.iter().map(|(name, _)| *name).collect();
        return Err(format!("the rate {text:?} needs a unit: {}, or write unlimited", units.join(", ")));
    };
    let too_large = || format!("the rate {text:?} is too large; for no limit write unlimited");
    // Integer arithmetic, so the canonical form read back gives the very same byte count.
    // Fewer than 39 digits fit in a u128; a rate with more is beyond any u64 anyway.
    let mantissa: u128 =
        if significant.len() < 39 { significant.parse().map_err(|_| too_large())? } else { return Err(too_large()) };
    let Some(divisor) = u32::try_from(fraction.len()).ok().and_then(|places| 10u128.checked_pow(places)) else {
        return Err(format!("the rate {text:?} has too many decimals"));
    };
    let scaled = mantissa.checked_mul(u128::from(size)).ok_or_else(too_large)?;
    let rounded = u64::try_from((scaled + divisor / 2) / divisor).map_err(|_| too_large())?;
    NonZeroU64::new(rounded)
        .map(Rate::BytesPerSecond)
        .ok_or_else(|| format!("the rate {text:?} is less than 1 byte per second; for no limit write unlimited"))
}

/// 1500 → "1.5", 2000 → "2".
fn thousandths_as_decimal(thousandths: u128) -> String {
    let (whole, fraction) = (thousandths / 1000, thousandths % 1000);
    if fraction == 0 {
        whole.to_string()
    } else {
        format!("{whole}.{fraction:03}").trim_end_matches('0').to_owned()
    }
}

/// "08:00", "08:00:30", "24:00".
fn clock(seconds_after_midnight: u32) -> String {
    let (hours, minutes, seconds) =
        (seconds_after_midnight / 3600, seconds_after_midnight / 60 % 60, seconds_after_midnight % 60);
    if seconds == 0 {
        format!("{hours:02}:{minutes:02}")
    } else {
        format!("{hours:02}:{minutes:02}:{seconds:02}")
    }
}

/// A throttle limit as people read it: "2 MB/s", "1.5 MB/s", "unlimited" for 0.
fn human_rate(limit: u64) -> String {
    if limit == 0 {
        return "unlimited".to_owned();
    }
    let (size, unit) = [(1_000_000_000, "GB/s"), (1_000_000, "MB/s"), (1_000, "KB/s")]
        .into_iter()
        .find(|&(size, _)| limit >= size)
        .unwrap_or((1, "B/s"));
    let value = format!("{:.2}", limit as f64 / size as f64);
    format!("{} {unit}", value.trim_end_matches('0').trim_end_matches('.'))
}

/// Keeps a throttle on its schedule; dropping it stops the changes (the throttle keeps the
/// last limit set).
#[must_use = "the schedule stops when the handle is dropped"]
pub struct ScheduleHandle {
    _stop_on_drop: DropGuard,
}

/// Sets `throttle` to the limit in force now (the schedule's, else `base_limit`), and again at
/// each boundary until the handle is dropped.
pub fn spawn(
    throttle: Arc<Throttle>,
    base_limit: u64,
    schedule: BandwidthSchedule,
    runtime: &tokio::runtime::Handle,
) -> ScheduleHandle {
    // Set before returning, so an upload started right after runs at the scheduled limit.
    throttle.set_rate(schedule.limit_at(base_limit, Local::now().naive_local()));
    let stop = CancellationToken::new();
    runtime.spawn(stop.clone().run_until_cancelled_owned(follow_schedule(throttle, base_limit, schedule)));
    ScheduleHandle { _stop_on_drop: stop.drop_guard() }
}

async fn follow_schedule(throttle: Arc<Throttle>, base_limit: u64, schedule: BandwidthSchedule) {
    let mut announced = None;
    loop {
        // Read afresh after every sleep: the sleep runs on a monotonic clock, the rules on the
        // wall clock, and the two part when the clock is set or the zone changes.
        let now = Local::now();
        let wall_clock = now.naive_local();
        let limit = schedule.limit_at(base_limit, wall_clock);
        throttle.set_rate(limit);
        if announced != Some(limit) {
            tracing::info!("bandwidth limit now {}", schedule.describe_now(base_limit, wall_clock));
            announced = Some(limit);
        }
        let next_change = schedule.next_change_after(wall_clock);
        let wait = next_change.map_or(LONGEST_SLEEP, |change| real_time_until(change, now)).min(LONGEST_SLEEP);
        tokio::time::sleep(wait).await;
    }
}

/// How long from `now` until the local clock shows `change`. Around a daylight-saving shift
/// wall-clock and real time part: a time shown twice counts at its first showing still ahead,
/// and a time that is skipped is waited for as if the clock did not jump, which is at most the
/// jump late. The wait is always positive, so the runner never spins.
fn real_time_until(change: NaiveDateTime, now: DateTime<Local>) -> Duration {
    let on_the_wall = change - now.naive_local();
    let in_real_time = match Local.from_local_datetime(&change) {
        LocalResult::Single(instant) => Some(instant - now),
        LocalResult::Ambiguous(first, second) => {
            [first, second].into_iter().map(|instant| instant - now).find(|wait| *wait > TimeDelta::zero())
        }
        LocalResult::None => None,
    };
    in_real_time.filter(|wait| *wait > TimeDelta::zero()).unwrap_or(on_the_wall).to_std().unwrap_or(LONGEST_SLEEP)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `day` ("Mon".."Sun", or "next Mon") of the week of Monday 2026-12-07, at `time`.
    fn on(day: &str, time: &str) -> NaiveDateTime {
        let (weeks, day) = day.strip_prefix("next ").map_or((0, day), |day| (1, day));
        let day = day_named(&day.to_ascii_lowercase()).expect("a day name");
        let format = if time.matches(':').count() == 2 { "%H:%M:%S%.f" } else { "%H:%M" };
        let time = NaiveTime::parse_from_str(time, format).expect("a time");
        let monday = chrono::NaiveDate::from_ymd_opt(2026, 12, 7).expect("a date");
        (monday + TimeDelta::days(7 * weeks + i64::from(day.num_days_from_monday()))).and_time(time)
    }

    fn schedule(text: &str) -> BandwidthSchedule {
        text.parse().unwrap_or_else(|e| panic!("{text:?} should parse: {e}"))
    }

    fn bytes(rate: u64) -> Option<Rate> {
        Some(Rate::BytesPerSecond(NonZeroU64::new(rate).expect("a rate above 0")))
    }

    fn error(text: &str) -> String {
        match text.parse::<BandwidthSchedule>() {
            Ok(parsed) => panic!("{text:?} should be refused, was read as {parsed}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn a_weekday_rule_limits_office_hours_and_leaves_the_rest_to_the_base_limit() {
        let office = schedule("Mon-Fri 08:00-18:00 2MB/s");
        assert_eq!(office.rate_at(on("Mon", "08:00")), bytes(2_000_000), "the start is inside the window");
        assert_eq!(office.rate_at(on("Wed", "12:34:56")), bytes(2_000_000));
        assert_eq!(office.rate_at(on("Fri", "17:59:59.999")), bytes(2_000_000), "up to the last instant");
        assert_eq!(office.rate_at(on("Fri", "18:00")), None, "the end is outside the window");
        assert_eq!(office.rate_at(on("Mon", "07:59:59.999")), None);
        assert_eq!(office.rate_at(on("Sat", "12:00")), None, "Saturday is not named");
    }

    #[test]
    fn days_are_read_as_names_ranges_lists_and_words_in_any_case() {
        let days_of = |days: &str| schedule(&format!("{days} 10:00-11:00 1MB/s")).rules[0].days;
        let set = |days: &[Weekday]| days.iter().copied().collect::<WeekdaySet>();
        use Weekday::*;
        assert_eq!(days_of("Mon"), set(&[Mon]));
        assert_eq!(days_of("TUESDAY"), set(&[Tue]));
        assert_eq!(days_of("thurs"), set(&[Thu]));
        assert_eq!(days_of("mon-fri"), set(&[Mon, Tue, Wed, Thu, Fri]));
        assert_eq!(days_of("Fri-Mon"), set(&[Fri, Sat, Sun, Mon]), "a range may wrap around the week");
        assert_eq!(days_of("Sat,Sun"), set(&[Sat, Sun]));
        assert_eq!(days_of("Sat, Sun"), set(&[Sat, Sun]), "spaces in a list are let be");
        assert_eq!(days_of("Mon,Wed-Thu,Sat"), set(&[Mon, Wed, Thu, Sat]));
        assert_eq!(days_of("weekdays"), set(&[Mon, Tue, Wed, Thu, Fri]));
        assert_eq!(days_of("Weekends"), set(&[Sat, Sun]));
        assert_eq!(days_of("daily"), WeekdaySet::ALL);
        assert_eq!(days_of("weekends,Fri"), set(&[Fri, Sat, Sun]));
    }

    #[test]
    fn times_and_rates_are_read_in_every_documented_form() {
        let rule = |text: &str| schedule(text).rules[0].clone();
        let at_eight = rule("Mon 8:00-18:00:30 1B/s");
        assert_eq!((at_eight.start, at_eight.end), (8 * 3600, 18 * 3600 + 30), "H:MM and HH:MM:SS");
        assert_eq!(rule("Mon 00:00-24:00 1B/s").end, SECONDS_PER_DAY, "a window may end at 24:00");
        assert_eq!(rule("Mon 8:00–18:00 1B/s").end, 18 * 3600, "an en dash separates times too");
        for (rate, expected) in [
            ("500B/s", bytes(500)),
            ("500KB/s", bytes(500_000)),
            ("2MB/s", bytes(2_000_000)),
            ("1.5 mb/s", bytes(1_500_000)),
            ("1GB/S", bytes(1_000_000_000)),
            ("1KiB/s", bytes(1024)),
            ("1.5MiB/s", bytes(1_572_864)),
            ("2GiB/s", bytes(2 << 30)),
            ("8kbit/s", bytes(1_000)),
            ("100Mbit/s", bytes(12_500_000)),
            ("1gbit/s", bytes(125_000_000)),
            (".5KB/s", bytes(500)),
            ("2.MB/s", bytes(2_000_000)),
            ("1.5B/s", bytes(2)),
            ("Unlimited", Some(Rate::Unlimited)),
        ] {
            assert_eq!(Some(rule(&format!("Mon 10:00-11:00 {rate}")).rate), expected, "{rate}");
        }
    }

    #[test]
    fn several_rules_are_separated_by_semicolons_and_empty_text_is_no_schedule() {
        let two = schedule("Mon-Fri 08:00-18:00 2MB/s; Sat,Sun 10:00-12:00 500KB/s;");
        assert_eq!(two.rules.len(), 2);
        assert_eq!(two.rate_at(on("Sun", "11:00")), bytes(500_000));
        assert!(schedule("").is_empty(), "no rules, no schedule");
        assert!(schedule(" ; ").is_empty());
    }

    #[test]
    fn every_refusal_quotes_the_rule_and_says_what_to_write() {
        for (text, expected) in [
            ("Mon-Fri 8-18 2MB/s", r#"bandwidth rule "Mon-Fri 8-18 2MB/s": the times must look like 08:00-18:00"#),
            ("Mon-Fri 08:00 2MB/s", "the times must look like 08:00-18:00 (24-hour, seconds optional), not \"08:00\""),
            ("Mon-Fri 8h-18h 2MB/s", "the times must look like 08:00-18:00"),
            ("Mon-Fri 08:00-18:0 2MB/s", "the times must look like 08:00-18:00"),
            ("Mon-Fri 08:00-25:00 2MB/s", r#""25:00" is not a time of day; times run from 00:00 to 24:00"#),
            ("Mon-Fri 08:60-18:00 2MB/s", r#""08:60" is not a time of day"#),
            ("Mon-Fri 24:00-06:00 2MB/s", "a window cannot start at 24:00"),
            ("Mon-Fri 08:00-08:00 2MB/s", "the window 08:00-08:00 is empty; for the whole day write 00:00-24:00"),
            ("Mon-Fri unlimited", "it has no times; write each rule as DAYS START-END RATE"),
            ("08:00-18:00 2MB/s", "it names no days"),
            ("Mon-Fri 08:00-18:00", "it has no rate"),
            (
                "Mon-Fry 08:00-18:00 2MB/s",
                r#"the days "Mon-Fry" are not understood; use names (Mon), ranges (Mon-Fri)"#,
            ),
            ("Sat,,Sun 08:00-18:00 2MB/s", r#"the days "" are not understood"#),
            ("weekday 08:00-18:00 2MB/s", "weekdays, weekends or daily"),
            ("Mon 08:00-18:00 0MB/s", "would stop uploads; for no limit write unlimited"),
            ("Mon 08:00-18:00 0", "would stop uploads; for no limit write unlimited"),
            ("Mon 08:00-18:00 0.0001B/s", "less than 1 byte per second"),
            ("Mon 08:00-18:00 2MB", "needs a unit: B/s, KB/s, MB/s, GB/s, KiB/s, MiB/s, GiB/s, kbit/s, Mbit/s, Gbit/s"),
            ("Mon 08:00-18:00 2", "needs a unit"),
            ("Mon 08:00-18:00 fast", "the rate must be a number and a unit, such as 2MB/s or unlimited, not \"fast\""),
            ("Mon 08:00-18:00 1.2.3MB/s", "must be a number and a unit"),
            ("Mon 08:00-18:00 .MB/s", "must be a number and a unit"),
            ("Mon 08:00-18:00 2Mb/s", r#""Mb/s" could mean bytes or bits; write MB/s for bytes or Mbit/s for bits"#),
            ("Mon 08:00-18:00 99999999999999999999GB/s", "is too large"),
        ] {
            let message = error(text);
            assert!(message.contains(expected), "{text:?} should be refused with {expected:?}, got {message:?}");
            assert!(message.contains(&format!("{:?}", text.trim())), "the message should quote the rule: {message}");
        }
        let second = error("Mon 08:00-18:00 1MB/s; Tue 9-17 1MB/s");
        assert!(
            second.starts_with(r#"bandwidth rule "Tue 9-17 1MB/s""#),
            "the faulty rule is the one quoted: {second}"
        );
    }

    #[test]
    fn the_canonical_form_reads_well_and_parses_back_to_the_same_schedule() {
        for (written, canonical) in [
            ("mon-FRI 8:00-18:00 2 MB/s", "Mon-Fri 08:00-18:00 2MB/s"),
            ("saturday,sunday 10:00-12:00 500kb/s", "Sat,Sun 10:00-12:00 500KB/s"),
            ("weekdays 08:00-18:00 1.5MiB/s", "Mon-Fri 08:00-18:00 1.5MiB/s"),
            ("Fri,Sat,Sun,Mon 22:00-06:00:30 16Mbit/s", "Fri-Mon 22:00-06:00:30 2MB/s"),
            ("Mon,Wed,Thu,Fri 00:00-24:00 unlimited", "Mon,Wed-Fri 00:00-24:00 unlimited"),
            ("daily 22:00-00:00 1234567B/s", "daily 22:00-00:00 1234567B/s"),
            (
                "Sun-Sat 01:00-02:00 1024KiB/s; Tue 1:00-2:00 0.5KB/s",
                "daily 01:00-02:00 1MiB/s; Tue 01:00-02:00 500B/s",
            ),
        ] {
            let parsed = schedule(written);
            assert_eq!(parsed.to_string(), canonical, "{written:?}");
            assert_eq!(schedule(canonical), parsed, "{canonical:?} should read back as {written:?}");
        }
    }

    #[test]
    fn the_settings_file_holds_the_rules_as_an_array_of_strings() {
        let office = schedule("Mon-Fri 08:00-18:00 2MB/s; Sat,Sun 10:00-12:00 500KB/s");
        let json = serde_json::to_string(&office).expect("serialises");
        assert_eq!(json, r#"["Mon-Fri 08:00-18:00 2MB/s","Sat,Sun 10:00-12:00 500KB/s"]"#);
        assert_eq!(serde_json::from_str::<BandwidthSchedule>(&json).expect("reads back"), office);
        let refused = serde_json::from_str::<BandwidthSchedule>(r#"["Mon-Fri 8-18 2MB/s"]"#).expect_err("a bad rule");
        assert!(refused.to_string().contains("the times must look like 08:00-18:00"), "{refused}");
    }

    #[test]
    fn a_window_past_midnight_belongs_to_the_day_it_starts_on() {
        let nights = schedule("Fri 22:00-06:00 1MB/s");
        assert_eq!(nights.rate_at(on("Fri", "22:00")), bytes(1_000_000));
        assert_eq!(nights.rate_at(on("Sat", "00:00")), bytes(1_000_000));
        assert_eq!(nights.rate_at(on("Sat", "05:59:59")), bytes(1_000_000));
        assert_eq!(nights.rate_at(on("Sat", "06:00")), None);
        assert_eq!(nights.rate_at(on("Fri", "05:00")), None, "Friday morning belongs to Thursday night");
        assert_eq!(nights.rate_at(on("Sat", "23:00")), None, "Saturday is not named");

        let sunday_night = schedule("Sun 22:00-06:00 1MB/s");
        assert_eq!(sunday_night.rate_at(on("next Mon", "03:00")), bytes(1_000_000), "Sunday night runs into Monday");
        assert_eq!(sunday_night.rate_at(on("Mon", "03:00")), bytes(1_000_000), "the week wraps around");
        assert_eq!(sunday_night.rate_at(on("Tue", "03:00")), None);

        let to_midnight = schedule("Mon 22:00-00:00 1MB/s");
        assert_eq!(to_midnight.rate_at(on("Mon", "23:59:59")), bytes(1_000_000));
        assert_eq!(to_midnight.rate_at(on("Tue", "00:00")), None, "a window ending at 00:00 ends at midnight");
    }

    #[test]
    fn where_rules_overlap_the_first_listed_wins() {
        let narrow_first = schedule("Fri 16:00-18:00 unlimited; weekdays 08:00-18:00 2MB/s");
        assert_eq!(narrow_first.rate_at(on("Fri", "17:00")), Some(Rate::Unlimited));
        assert_eq!(narrow_first.rate_at(on("Thu", "17:00")), bytes(2_000_000));
        let broad_first = schedule("weekdays 08:00-18:00 2MB/s; Fri 16:00-18:00 unlimited");
        assert_eq!(broad_first.rate_at(on("Fri", "17:00")), bytes(2_000_000), "the narrow rule never applies");
    }

    #[test]
    fn the_next_change_is_where_another_rule_or_none_comes_into_force() {
        let office = schedule("Mon-Fri 08:00-18:00 2MB/s");
        assert_eq!(office.next_change_after(on("Mon", "09:00")), Some(on("Mon", "18:00")));
        assert_eq!(office.next_change_after(on("Mon", "07:00")), Some(on("Mon", "08:00")));
        assert_eq!(office.next_change_after(on("Mon", "08:00")), Some(on("Mon", "18:00")), "strictly after");
        assert_eq!(office.next_change_after(on("Fri", "19:00")), Some(on("next Mon", "08:00")), "over the weekend");
        assert_eq!(office.next_change_after(on("Sun", "23:59:59.5")), Some(on("next Mon", "08:00")));

        let nights = schedule("Sun 22:00-06:00 1MB/s");
        assert_eq!(nights.next_change_after(on("Sun", "23:00")), Some(on("next Mon", "06:00")), "across Sunday-Monday");
        assert_eq!(nights.next_change_after(on("Mon", "06:00")), Some(on("Sun", "22:00")), "a week ahead");

        let shadowed = schedule("weekdays 08:00-18:00 2MB/s; Wed 12:00-13:00 unlimited");
        assert_eq!(
            shadowed.next_change_after(on("Wed", "09:00")),
            Some(on("Wed", "18:00")),
            "the boundaries of a rule that never applies change nothing"
        );
        let back_to_back = schedule("Mon 08:00-12:00 2MB/s; Mon 12:00-18:00 1MB/s");
        assert_eq!(back_to_back.next_change_after(on("Mon", "10:00")), Some(on("Mon", "12:00")));
        let soon = schedule("Mon 08:00:05-09:00 1MB/s");
        assert_eq!(soon.next_change_after(on("Mon", "08:00")), Some(on("Mon", "08:00:05")), "seconds count");

        assert_eq!(schedule("daily 00:00-24:00 1MB/s").next_change_after(on("Mon", "09:00")), None, "always in force");
        assert_eq!(BandwidthSchedule::default().next_change_after(on("Mon", "09:00")), None);
    }

    #[test]
    fn the_summary_says_the_limit_until_when_and_by_which_rule() {
        let office = schedule("Mon-Fri 08:00-18:00 2MB/s; Sat 10:00-12:00 unlimited");
        assert_eq!(office.describe_now(0, on("Mon", "09:00")), "2 MB/s until 18:00 (Mon-Fri 08:00-18:00)");
        assert_eq!(office.describe_now(0, on("Fri", "19:00")), "unlimited until Sat 10:00");
        assert_eq!(office.describe_now(1_500_000, on("Sat", "13:00")), "1.5 MB/s until Mon 08:00");
        assert_eq!(office.describe_now(1_500_000, on("Sat", "11:00")), "unlimited until 12:00 (Sat 10:00-12:00)");
        assert_eq!(
            schedule("daily 00:00-24:00 64KiB/s").describe_now(0, on("Tue", "09:00")),
            "65.54 KB/s (daily 00:00-24:00)"
        );
        assert_eq!(BandwidthSchedule::default().describe_now(500, on("Tue", "09:00")), "500 B/s");
    }

    #[test]
    fn the_wait_for_a_change_is_real_time_and_never_zero() {
        let now = Local::now();
        let in_ten_minutes = now.naive_local() + TimeDelta::minutes(10);
        let wait = real_time_until(in_ten_minutes, now);
        // Within a daylight-saving shift the wall clock and real time may part by the shift.
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(10 * 60 + 2 * 3600), "{wait:?}");
        let wait = real_time_until(now.naive_local() + TimeDelta::milliseconds(1), now);
        assert!(wait > Duration::ZERO, "a change a moment ahead is still waited for");
    }

    #[tokio::test]
    async fn spawning_sets_the_throttle_at_once_and_dropping_the_handle_stops_the_task() {
        let throttle = Arc::new(Throttle::default());
        let always = schedule("daily 00:00-24:00 2MB/s");
        let handle = spawn(Arc::clone(&throttle), 5_000, always, &tokio::runtime::Handle::current());
        assert_eq!(throttle.rate(), 2_000_000, "the rule in force applies before spawn returns");
        drop(handle);
        let released = tokio::time::timeout(Duration::from_secs(10), async {
            while Arc::strong_count(&throttle) > 1 {
                tokio::task::yield_now().await;
            }
        });
        assert!(released.await.is_ok(), "the task should end, and let go of the throttle, once the handle is dropped");

        let _none =
            spawn(Arc::clone(&throttle), 5_000, BandwidthSchedule::default(), &tokio::runtime::Handle::current());
        assert_eq!(throttle.rate(), 5_000, "without rules the base limit applies");
    }

    fn any_rule() -> impl proptest::strategy::Strategy<Value = ScheduleRule> {
        use proptest::prelude::*;
        let rate = prop_oneof![
            Just(Rate::Unlimited),
            (1u64..).prop_map(|b| Rate::BytesPerSecond(NonZeroU64::new(b).expect("from 1 up")))
        ];
        (1u8..128, 0..SECONDS_PER_DAY, 0..=SECONDS_PER_DAY, rate)
            .prop_filter("a window is not empty", |(_, start, end, _)| start != end)
            .prop_map(|(days, start, end, rate)| ScheduleRule {
                days: WEEK
                    .into_iter()
                    .enumerate()
                    .filter(|(bit, _)| days & (1 << bit) != 0)
                    .map(|(_, day)| day)
                    .collect(),
                start,
                end,
                rate,
            })
    }

    fn any_moment() -> impl proptest::strategy::Strategy<Value = NaiveDateTime> {
        use proptest::prelude::*;
        // 2020 to 2040, to the nanosecond.
        (1_577_836_800i64..2_208_988_800, 0u32..1_000_000_000)
            .prop_map(|(seconds, nanos)| DateTime::from_timestamp(seconds, nanos).expect("in range").naive_utc())
    }

    proptest::proptest! {
        #[test]
        fn any_text_is_read_or_refused_and_never_panics(text in ".{0,60}") {
            let _ = text.parse::<BandwidthSchedule>();
        }

        #[test]
        fn nearly_right_rules_are_read_or_refused_and_never_panic(
            text in "(Mon|tue|Fri-Mon|Sat,Sun|weekdays|daily|x)? ?[0-9:]{0,9}[-–]?[0-9:]{0,9} ?[0-9.]{0,25}(B/s|KiB/s|Mbit/s|Mb/s|unlimited|)?;?"
        ) {
            if let Ok(parsed) = text.parse::<BandwidthSchedule>() {
                proptest::prop_assert_eq!(parsed.to_string().parse::<BandwidthSchedule>().ok(), Some(parsed));
            }
        }

        #[test]
        fn any_schedule_written_out_reads_back_the_same(rules in proptest::collection::vec(any_rule(), 0..5)) {
            let original = BandwidthSchedule { rules };
            let written = original.to_string();
            proptest::prop_assert_eq!(written.parse::<BandwidthSchedule>().ok(), Some(original), "{}", written);
        }

        #[test]
        fn nothing_changes_before_the_announced_boundary_and_something_does_at_it(
            rules in proptest::collection::vec(any_rule(), 1..5),
            at in any_moment(),
            fraction in 0.0f64..1.0,
        ) {
            let schedule = BandwidthSchedule { rules };
            let in_force = schedule.rule_in_force(at);
            match schedule.next_change_after(at) {
                Some(change) => {
                    proptest::prop_assert!(change > at && change <= at + TimeDelta::days(LOOKAHEAD_DAYS));
                    let just_before = change - TimeDelta::nanoseconds(1);
                    proptest::prop_assert_eq!(schedule.rate_at(just_before), schedule.rate_at(at));
                    proptest::prop_assert_eq!(schedule.rule_in_force(just_before), in_force);
                    let span = (change - at).num_nanoseconds().expect("eight days at most");
                    let between = at + TimeDelta::nanoseconds(((span as f64 * fraction) as i64).min(span - 1));
                    proptest::prop_assert_eq!(schedule.rule_in_force(between), in_force, "at {}", between);
                    proptest::prop_assert_ne!(schedule.rule_in_force(change), in_force, "nothing changed at {}", change);
                }
                None => {
                    for hours in 0..(24 * 7) {
                        let later = at + TimeDelta::hours(hours) + TimeDelta::seconds((fraction * 3600.0) as i64);
                        proptest::prop_assert_eq!(schedule.rule_in_force(later), in_force, "at {}", later);
                    }
                }
            }
        }
    }
}
