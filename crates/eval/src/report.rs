//! How `sift eval` presents a grid: a Markdown table and one self-contained HTML page.

use crate::experiment::{GridRow, METRICS};
use crate::metrics::Metric;

fn mean(row: &GridRow, m: Metric) -> f64 {
    row.evaluation.mean.get(&m.name()).copied().unwrap_or(0.0)
}

/// What the tables call a metric: MRR and hit rate, as RAG evaluations name them.
pub fn label(m: Metric) -> String {
    match m {
        Metric::ReciprocalRank(k) => format!("MRR@{k}"),
        Metric::Success(k) => format!("Hit@{k}"),
        Metric::AveragePrecision(k) => format!("MAP@{k}"),
        other => other.name(),
    }
}

/// The grid as a Markdown table on stdout.
pub fn print_table(rows: &[GridRow]) {
    print!("| retriever | reranker |");
    for m in METRICS {
        print!(" {} |", label(m));
    }
    println!(" ms/query | rerank p50 ms |");
    println!("|---|---|{}---|---|", "---|".repeat(METRICS.len()));
    for r in rows {
        print!("| {} | {} |", r.retriever, r.reranker);
        for m in METRICS {
            print!(" {:.4} |", mean(r, m));
        }
        println!(" {:.1} | {} |", r.ms_per_query, rerank_ms(r));
    }
}

/// The rerank stage's median per query, or a dash without a reranker.
fn rerank_ms(r: &GridRow) -> String {
    r.rerank_ms_p50
        .map_or_else(|| "–".to_string(), |ms| format!("{ms:.1}"))
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The seen/unseen table: nDCG@10, MRR@10 and R@100 of every run on each group.
pub fn print_seen_unseen(rows: &[crate::experiment::SeenUnseen]) {
    let Some(first) = rows.first() else {
        return;
    };
    let shown = [
        Metric::Ndcg(10),
        Metric::ReciprocalRank(10),
        Metric::Recall(100),
    ];
    println!(
        "\nby whether a relevant document was a training positive (seen: {} queries, unseen: {}):",
        first.seen_queries, first.unseen_queries
    );
    print!("| retriever | reranker |");
    for group in ["seen", "unseen"] {
        for m in shown {
            print!(" {group} {} |", label(m));
        }
    }
    println!();
    println!("|---|---|{}", "---|".repeat(2 * shown.len()));
    for r in rows {
        print!("| {} | {} |", r.retriever, r.reranker);
        for (e, n) in [(&r.seen, r.seen_queries), (&r.unseen, r.unseen_queries)] {
            for m in shown {
                match e.mean.get(&m.name()) {
                    Some(v) if n > 0 => print!(" {v:.4} |"),
                    _ => print!(" – |"),
                }
            }
        }
        println!();
    }
}

/// One self-contained HTML page: the table and a horizontal bar chart per metric (inline SVG,
/// no scripts or external assets).
pub fn html_report(rows: &[GridRow], queries: usize, data: &str) -> String {
    let mut html = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>sift eval</title><style>\
body{{font-family:system-ui,sans-serif;margin:2em;color:#222}}table{{border-collapse:collapse}}\
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}td:first-child,td:nth-child(2){{text-align:left}}\
h2{{margin-top:1.5em;font-size:1.1em}}</style></head><body><h1>sift eval</h1>\
<p>{} — {queries} queries. Metrics use trec_eval's definitions.</p><table><tr><th>retriever</th><th>reranker</th>",
        escape(data)
    );
    for m in METRICS {
        html.push_str(&format!("<th>{}</th>", escape(&label(m))));
    }
    html.push_str("<th>ms/query</th><th>rerank p50 ms</th></tr>");
    for r in rows {
        html.push_str(&format!(
            "<tr><td>{}</td><td>{}</td>",
            escape(&r.retriever),
            escape(&r.reranker)
        ));
        for m in METRICS {
            html.push_str(&format!("<td>{:.4}</td>", mean(r, m)));
        }
        html.push_str(&format!(
            "<td>{:.1}</td><td>{}</td></tr>",
            r.ms_per_query,
            rerank_ms(r)
        ));
    }
    html.push_str("</table>");
    let (label_w, bar_w, row_h) = (360.0, 400.0, 22.0);
    for m in METRICS {
        let title = label(m);
        let height = row_h * rows.len() as f64 + 10.0;
        html.push_str(&format!(
            "<h2>{}</h2><svg width=\"{}\" height=\"{height}\" role=\"img\" aria-label=\"{}\">",
            escape(&title),
            label_w + bar_w + 70.0,
            escape(&title)
        ));
        for (i, r) in rows.iter().enumerate() {
            let (retriever, reranker) = (&r.retriever, &r.reranker);
            let v = mean(r, m);
            let y = i as f64 * row_h + 5.0;
            let label = if reranker == "none" {
                retriever.clone()
            } else {
                format!("{retriever} → {reranker}")
            };
            html.push_str(&format!(
                "<text x=\"{}\" y=\"{}\" text-anchor=\"end\" font-size=\"12\">{}</text>\
<rect x=\"{label_w}\" y=\"{y}\" width=\"{:.1}\" height=\"{}\" fill=\"#4a7fb5\"/>\
<text x=\"{:.1}\" y=\"{}\" font-size=\"12\">{v:.4}</text>",
                label_w - 6.0,
                y + 14.0,
                escape(&label),
                v * bar_w,
                row_h - 6.0,
                label_w + v * bar_w + 4.0,
                y + 14.0
            ));
        }
        html.push_str("</svg>");
    }
    html.push_str("</body></html>\n");
    html
}
