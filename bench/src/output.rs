//! Machine-readable results: the whole report as JSON, one CSV row per client plus one
//! aggregate row per group.

use crate::report::Report;
use crate::stats::GroupSummary;
use std::fmt::Write;

pub fn write_json(report: &Report, path: &str) -> Result<(), String> {
    let json = serde_json::to_string_pretty(report).map_err(|e| e.to_string())?;
    std::fs::write(path, json + "\n").map_err(|e| format!("{path}: {e}"))
}

const CSV_HEADER: &str = "scenario,role,client,server,msgs,bytes,seconds,msgs_per_sec,mb_per_sec,p50_us,p90_us,p99_us,p999_us,max_us,lost,error";

pub fn csv(report: &Report) -> String {
    let mut s = String::from(CSV_HEADER);
    s.push('\n');
    for c in &report.clients {
        let _ = writeln!(
            s,
            "{},{},{},{},{},{},{:.6},{:.1},{:.3},,,,,,,{}",
            report.scenario,
            c.role.name(),
            c.index,
            c.server,
            c.msgs,
            c.bytes,
            c.seconds,
            c.msgs_per_sec,
            c.mb_per_sec,
            quote(c.error.as_deref().unwrap_or(""))
        );
    }
    let groups: [(&str, &Option<GroupSummary>); 2] =
        [("pub", &report.publish), ("sub", &report.subscribe)];
    let latency_row = if report.scenario == "reqrep" {
        "pub"
    } else {
        "sub"
    };
    for (role, group) in groups {
        let Some(g) = group else { continue };
        let latency = match &report.latency {
            Some(l) if role == latency_row => format!(
                "{:.1},{:.1},{:.1},{:.1},{:.1}",
                l.p50_us, l.p90_us, l.p99_us, l.p999_us, l.max_us
            ),
            _ => ",,,,".to_string(),
        };
        let _ = writeln!(
            s,
            "{},{role},all,{},{},{},{:.6},{:.1},{:.3},{latency},{},",
            report.scenario,
            quote(&report.servers.join(" ")),
            g.msgs,
            g.bytes,
            g.seconds,
            g.msgs_per_sec,
            g.mb_per_sec,
            report.lost
        );
    }
    s
}

pub fn write_csv(report: &Report, path: &str) -> Result<(), String> {
    std::fs::write(path, csv(report)).map_err(|e| format!("{path}: {e}"))
}

fn quote(field: &str) -> String {
    if field.contains([',', '"', '\n']) {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(quote("plain"), "plain");
        assert_eq!(quote("a,b"), "\"a,b\"");
        assert_eq!(quote("say \"x\""), "\"say \"\"x\"\"\"");
    }
}
