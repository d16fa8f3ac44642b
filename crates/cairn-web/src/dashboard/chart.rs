//! The activity chart: events per day as stacked bars, laid out here and drawn by the
//! template as inline SVG (no script, no external library; the CSP allows it because
//! SVG in HTML is markup, not script).

use cairn_core::dashboard::DayCount;
use time::{Date, Duration};

/// Bar colours, by kind of event, in stacking order (bottom first).
pub const SERIES: [(&str, &str); 5] = [
    ("created", "Created"),
    ("updated", "Updated"),
    ("suspended", "Suspended"),
    ("deleted", "Deleted"),
    ("other", "Settings and other"),
];

pub const WIDTH: u32 = 700;
pub const HEIGHT: u32 = 220;
const LEFT: u32 = 36;
const BOTTOM: u32 = 28;
const TOP: u32 = 10;

#[derive(Debug, Clone)]
pub struct Bar {
    pub x: u32,
    pub y: u32,
    pub w: u32,
    pub h: u32,
    pub class: &'static str,
    pub title: String,
}

#[derive(Debug, Clone)]
pub struct Label {
    pub x: u32,
    pub y: u32,
    pub text: String,
}

#[derive(Debug, Clone)]
pub struct Chart {
    pub width: u32,
    pub height: u32,
    pub bars: Vec<Bar>,
    pub day_labels: Vec<Label>,
    pub grid: Vec<Label>,
    pub axis_y: u32,
    pub axis_x1: u32,
    pub total: u64,
    pub days: u32,
    pub summary: String,
}

/// A "nice" upper bound for the axis: 1, 2, 5 × 10^n.
fn nice_max(max: u64) -> u64 {
    let mut step = 1;
    loop {
        for m in [1, 2, 5] {
            if m * step >= max {
                return m * step;
            }
        }
        step *= 10;
    }
}

pub fn build(first: Date, days: u32, counts: &[DayCount]) -> Chart {
    let mut per_day = vec![[0u64; SERIES.len()]; days as usize];
    for c in counts {
        let Some(i) = (0..days).find(|&i| {
            let d = first + Duration::days(i64::from(i));
            c.day == format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
        }) else {
            continue;
        };
        let class = super::view::action_class(&c.action);
        let s = SERIES.iter().position(|(k, _)| *k == class).unwrap_or(4);
        per_day[i as usize][s] += c.count;
    }
    let total: u64 = per_day.iter().flatten().sum();
    let max = nice_max(
        per_day
            .iter()
            .map(|d| d.iter().sum())
            .max()
            .unwrap_or(0)
            .max(1),
    );
    let plot_h = HEIGHT - TOP - BOTTOM;
    let slot = (WIDTH - LEFT) / days.max(1);
    let bar_w = slot * 7 / 10;
    let base_y = HEIGHT - BOTTOM;
    let mut bars = Vec::new();
    let mut day_labels = Vec::new();
    for (i, day) in per_day.iter().enumerate() {
        let d = first + Duration::days(i as i64);
        let x = LEFT + i as u32 * slot + (slot - bar_w) / 2;
        let mut y = base_y;
        for (s, &n) in day.iter().enumerate() {
            if n == 0 {
                continue;
            }
            let h = ((n as f64 / max as f64) * f64::from(plot_h))
                .round()
                .max(1.0) as u32;
            y = y.saturating_sub(h);
            bars.push(Bar {
                x,
                y,
                w: bar_w,
                h,
                class: SERIES[s].0,
                title: format!(
                    "{} {}: {} {}",
                    d.month(),
                    d.day(),
                    n,
                    SERIES[s].1.to_lowercase()
                ),
            });
        }
        // Label every other day on narrow charts so the text never overlaps.
        if days <= 14 && (i % 2 == 0 || days <= 7) {
            day_labels.push(Label {
                x: x + bar_w / 2,
                y: HEIGHT - 8,
                text: format!("{} {}", &d.month().to_string()[..3], d.day()),
            });
        }
    }
    let grid = [0, max / 2, max]
        .iter()
        .map(|&v| Label {
            x: LEFT - 6,
            y: base_y - ((v as f64 / max as f64) * f64::from(plot_h)).round() as u32,
            text: v.to_string(),
        })
        .collect();
    Chart {
        width: WIDTH,
        height: HEIGHT,
        bars,
        day_labels,
        grid,
        axis_y: base_y,
        axis_x1: WIDTH,
        total,
        days,
        summary: format!("{total} events in the last {days} days"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    #[test]
    fn bars_stack_per_day() {
        let counts = vec![
            DayCount {
                day: "2026-05-01".into(),
                action: "user_created".into(),
                count: 4,
            },
            DayCount {
                day: "2026-05-01".into(),
                action: "user_suspended".into(),
                count: 1,
            },
            DayCount {
                day: "2026-05-03".into(),
                action: "token_generated".into(),
                count: 1,
            },
            DayCount {
                day: "2026-04-01".into(),
                action: "user_created".into(),
                count: 9,
            },
        ];
        let c = build(date!(2026 - 05 - 01), 14, &counts);
        assert_eq!(c.total, 6);
        assert_eq!(c.bars.len(), 3);
        assert_eq!(c.bars[0].class, "created");
        assert!(c.bars[1].y < c.bars[0].y, "suspended stacks on created");
        assert_eq!(nice_max(3), 5);
        assert_eq!(nice_max(11), 20);
        assert_eq!(nice_max(1), 1);
    }
}
