//! Record times as instants to compare: a date as written in metadata ("2014", "2014-05",
//! "2014-05-09", or a full time with or without its zone) read as the first or the last second
//! of the period it names.

use chrono::{NaiveDate, NaiveDateTime, NaiveTime};

/// Which end of a partial date's period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edge {
    First,
    Last,
}

/// Seconds since 1970 (UTC) of `text`'s period edge; `None` when it is no date.
pub fn seconds(text: &str, edge: Edge) -> Option<i64> {
    let text = text.trim();
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Some(t.timestamp());
    }
    for format in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%d %H:%M:%S",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(text, format) {
            return Some(t.and_utc().timestamp());
        }
    }
    let date = if let Ok(d) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        (d, d)
    } else if let Some((y, m)) = text
        .split_once('-')
        .and_then(|(y, m)| Some((y.parse::<i32>().ok()?, m.parse::<u32>().ok()?)))
        && text.len() == 7
    {
        let first = NaiveDate::from_ymd_opt(y, m, 1)?;
        let next = if m == 12 {
            NaiveDate::from_ymd_opt(y + 1, 1, 1)?
        } else {
            NaiveDate::from_ymd_opt(y, m + 1, 1)?
        };
        (first, next.pred_opt()?)
    } else if text.len() == 4 {
        let y = text.parse::<i32>().ok()?;
        (
            NaiveDate::from_ymd_opt(y, 1, 1)?,
            NaiveDate::from_ymd_opt(y, 12, 31)?,
        )
    } else {
        return None;
    };
    let (day, time) = match edge {
        Edge::First => (date.0, NaiveTime::MIN),
        Edge::Last => (date.1, NaiveTime::from_hms_opt(23, 59, 59)?),
    };
    Some(day.and_time(time).and_utc().timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> i64 {
        chrono::DateTime::parse_from_rfc3339(text)
            .unwrap()
            .timestamp()
    }

    #[test]
    fn partial_dates_cover_their_period() {
        assert_eq!(
            seconds("2014", Edge::First),
            Some(at("2014-01-01T00:00:00Z"))
        );
        assert_eq!(
            seconds("2014", Edge::Last),
            Some(at("2014-12-31T23:59:59Z"))
        );
        assert_eq!(
            seconds("2016-02", Edge::Last),
            Some(at("2016-02-29T23:59:59Z"))
        );
        assert_eq!(
            seconds("2016-12", Edge::Last),
            Some(at("2016-12-31T23:59:59Z"))
        );
        assert_eq!(
            seconds("2014-05-09", Edge::First),
            Some(at("2014-05-09T00:00:00Z"))
        );
        assert_eq!(
            seconds("2014-05-09T22:00:01.486366", Edge::First),
            Some(at("2014-05-09T22:00:01Z"))
        );
        assert_eq!(
            seconds("2014-05-09T22:00:01+02:00", Edge::Last),
            Some(at("2014-05-09T20:00:01Z"))
        );
        assert_eq!(seconds("now", Edge::First), None);
        assert_eq!(seconds("", Edge::First), None);
    }
}
