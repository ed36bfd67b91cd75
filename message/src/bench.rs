//! `weft bench message`: encode/decode throughput of each format on a realistic
//! ~64 KB context. Prints to stdout (the only output besides `cli`).
//!
//! Throughput is bytes of that format's encoding per second, MB = 10^6 bytes,
//! median of several timed samples, taken round-robin across the formats.
//! Time is the measuring thread's CPU time where Linux reports it
//! (`/proc/thread-self/schedstat`), else wall-clock time: on a shared machine
//! other processes' load then stretches no format's figures. Formats differ in size for the same
//! context, so the time per call (ms) is printed too: that is what compares
//! the formats on the same work.

use crate::{Format, decode, encode, model::*};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// A realistic Update context of about `target` bytes of JSON: a Target with
/// every common column type, formatted values, pre and post images, shared
/// variables and a stage-30 parent.
pub fn realistic_context(target: usize) -> RemoteExecutionContext {
    let id = |n: u128| {
        Uuid::from_u128(0x6d81597f_0f9f_e711_8122_000d3aa2331c ^ (n * 0x9e3779b97f4a7c15))
    };
    let mut target_entity = Entity::new("account", id(1));
    let mut n = 0u128;
    let mut ctx = RemoteExecutionContext::new_minimal("Update", "account", 40);
    loop {
        n += 1;
        let k = |s: &str| format!("new_{s}{n}");
        let attrs = &mut target_entity.attributes;
        attrs.push((
            k("name"),
            Value::String(format!("Contoso Ltd. branch {n} – Zürich")),
        ));
        attrs.push((k("count"), Value::Int(n as i32 * 7)));
        attrs.push((k("big"), Value::Long(9_000_000_000 + n as i64)));
        attrs.push((k("ratio"), Value::Double(n as f64 / 3.0)));
        attrs.push((
            k("amount"),
            Value::Decimal(Decimal::parse("1234.5600").unwrap_or_default()),
        ));
        attrs.push((
            k("revenue"),
            Value::Money(Decimal::parse("100000.25").unwrap_or_default()),
        ));
        attrs.push((
            k("when"),
            Value::DateTime(DateTime::utc(1697398445000 + n as i64)),
        ));
        attrs.push((k("flag"), Value::Boolean(n.is_multiple_of(2))));
        attrs.push((k("choice"), Value::OptionSetValue(342490000 + n as i32)));
        attrs.push((k("choices"), Value::OptionSetValueCollection(vec![1, 2, 3])));
        attrs.push((
            k("owner"),
            Value::EntityReference(EntityReference::new("systemuser", id(n + 100))),
        ));
        attrs.push((k("ref"), Value::Guid(id(n + 200))));
        attrs.push((k("empty"), Value::Null));
        target_entity
            .formatted_values
            .push((k("revenue"), "€100,000.25".into()));
        target_entity
            .formatted_values
            .push((k("when"), "2023-10-15T21:34:05+02:00".into()));
        ctx.input_parameters = vec![
            (
                "Target".into(),
                Value::Entity(Box::new(target_entity.clone())),
            ),
            ("SuppressDuplicateDetection".into(), Value::Boolean(false)),
        ];
        let mut pre = target_entity.clone();
        pre.attributes.truncate(pre.attributes.len() / 2);
        ctx.pre_entity_images = vec![("PreImage".into(), pre)];
        ctx.post_entity_images = vec![("PostImage".into(), target_entity.clone())];
        if crate::json::encode(&ctx).len() >= target {
            break;
        }
    }
    ctx.business_unit_id = id(3);
    ctx.correlation_id = id(4);
    ctx.operation_id = id(5);
    ctx.organization_id = id(6);
    ctx.organization_name = "unqb015df52a05fee11a382000d3a64d".into();
    ctx.primary_entity_id = id(1);
    ctx.operation_created_on = DateTime::local(1697398446012, 0);
    ctx.owning_extension = Some(EntityReference::new("sdkmessageprocessingstep", id(7)));
    ctx.shared_variables = vec![
        ("IsAutoTransact".into(), Value::Boolean(true)),
        ("AcceptLang".into(), Value::String("en-US,en;q=0.9".into())),
        (
            "ChangedEntityTypes".into(),
            Value::StringPairs(vec![("account".into(), "Update".into())]),
        ),
    ];
    let mut parent = RemoteExecutionContext::new_minimal("Update", "account", 30);
    parent.input_parameters = vec![(
        "Target".into(),
        Value::Entity(Box::new(Entity::new("account", id(1)))),
    )];
    ctx.parent_context = Some(Box::new(parent));
    ctx
}

/// Calls of `f` per timed batch: enough for ~40 ms, so timer noise is negligible.
fn batch_size(f: &mut dyn FnMut()) -> u32 {
    let mut iters = 1u32;
    loop {
        let t = Instant::now();
        for _ in 0..iters {
            f();
        }
        if t.elapsed() > Duration::from_millis(40) || iters > 1 << 20 {
            return iters;
        }
        iters *= 2;
    }
}

/// The calling thread's time on a CPU so far, in nanoseconds (Linux).
fn thread_cpu_ns() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    stat.split_whitespace().next()?.parse().ok()
}

/// Seconds `f` takes: CPU time of this thread when available, else wall time.
fn timed(f: impl FnOnce()) -> f64 {
    let (wall, cpu) = (Instant::now(), thread_cpu_ns());
    f();
    match (cpu, thread_cpu_ns()) {
        (Some(a), Some(b)) if b > a => (b - a) as f64 / 1e9,
        _ => wall.elapsed().as_secs_f64(),
    }
}

/// Median seconds per call of each job over `samples` rounds. Each round
/// times one batch of every job in turn, so all jobs see the same moments of
/// a shared machine's load rather than one format a quiet minute and the
/// next a busy one.
fn time_interleaved(samples: usize, jobs: &mut [Box<dyn FnMut() + '_>]) -> Vec<f64> {
    let sizes: Vec<u32> = jobs.iter_mut().map(|f| batch_size(f.as_mut())).collect();
    let mut times = vec![Vec::with_capacity(samples); jobs.len()];
    for _ in 0..samples {
        for ((f, &iters), t) in jobs.iter_mut().zip(&sizes).zip(&mut times) {
            let seconds = timed(|| {
                for _ in 0..iters {
                    f();
                }
            });
            t.push(seconds / f64::from(iters));
        }
    }
    times
        .into_iter()
        .map(|mut v| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        })
        .collect()
}

/// Measured throughput of one format.
#[derive(Debug, Clone, Copy)]
pub struct Throughput {
    /// The format.
    pub format: Format,
    /// Encoded size in bytes.
    pub bytes: usize,
    /// Encode MB/s.
    pub encode_mb_s: f64,
    /// Decode MB/s.
    pub decode_mb_s: f64,
    /// Milliseconds per encode of the context.
    pub encode_ms: f64,
    /// Milliseconds per decode of the context.
    pub decode_ms: f64,
}

/// Measures all three formats on a ~64 KB context.
pub fn measure(samples: usize) -> anyhow::Result<Vec<Throughput>> {
    let ctx = realistic_context(64 * 1024);
    let formats = [Format::Json, Format::Xml, Format::Binary];
    let bodies: Vec<Vec<u8>> = formats.iter().map(|&f| encode(&ctx, f)).collect();
    for (&format, body) in formats.iter().zip(&bodies) {
        anyhow::ensure!(
            decode(body, format).is_ok(),
            "{format:?} does not decode its own output"
        );
    }
    let mut jobs: Vec<Box<dyn FnMut() + '_>> = Vec::new();
    for (&format, body) in formats.iter().zip(&bodies) {
        let ctx = &ctx;
        jobs.push(Box::new(move || {
            std::hint::black_box(encode(std::hint::black_box(ctx), format));
        }));
        jobs.push(Box::new(move || {
            let _ = std::hint::black_box(decode(std::hint::black_box(body), format));
        }));
    }
    let times = time_interleaved(samples, &mut jobs);
    Ok(formats
        .iter()
        .zip(&bodies)
        .zip(times.chunks(2))
        .map(|((&format, body), t)| {
            let mb = body.len() as f64 / 1e6;
            Throughput {
                format,
                bytes: body.len(),
                encode_mb_s: mb / t[0],
                decode_mb_s: mb / t[1],
                encode_ms: t[0] * 1e3,
                decode_ms: t[1] * 1e3,
            }
        })
        .collect())
}

/// Runs the benchmark and prints text, or one JSON object when `json`.
pub fn run(json: bool) -> anyhow::Result<()> {
    let results = measure(7)?;
    if json {
        let mut obj = serde_json::Map::new();
        for r in &results {
            let name = match r.format {
                Format::Json => "json",
                Format::Xml => "xml",
                Format::Binary => "binary",
            };
            let round = |v: f64| (v * 10.0).round() / 10.0;
            obj.insert(format!("{name}_bytes"), r.bytes.into());
            obj.insert(format!("{name}_encode_mb_s"), round(r.encode_mb_s).into());
            obj.insert(format!("{name}_decode_mb_s"), round(r.decode_mb_s).into());
            let round_ms = |v: f64| (v * 1e4).round() / 1e4;
            obj.insert(format!("{name}_encode_ms"), round_ms(r.encode_ms).into());
            obj.insert(format!("{name}_decode_ms"), round_ms(r.decode_ms).into());
        }
        println!("{}", serde_json::Value::Object(obj));
    } else {
        println!(
            "message codec throughput (~64 KB context, median of 7 rounds, CPU time where available, MB = 10^6 bytes)"
        );
        for r in &results {
            println!(
                "  {:<8} {:>7} bytes  encode {:>8.1} MB/s {:>7.4} ms  decode {:>8.1} MB/s {:>7.4} ms",
                r.format.content_type().trim_start_matches("application/"),
                r.bytes,
                r.encode_mb_s,
                r.encode_ms,
                r.decode_mb_s,
                r.decode_ms
            );
        }
    }
    Ok(())
}
