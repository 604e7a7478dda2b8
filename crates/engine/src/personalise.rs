//! Profile templates for the workers, and personalising a package per item.
//!
//! Where this runs: the worker's execute step already leaves the async
//! executor for `tokio::task::spawn_blocking`; inside it, [`execute_parallel`]
//! splits a chunk across the machine's cores with scoped threads, because
//! personalisation is the one CPU-heavy part of executing an item. On SQLite
//! the chunk runs while the store holds its write transaction (`run_chunk`),
//! so finishing it on every core also shortens how long writers wait.
//!
//! The executor itself stays pure: templates are parsed once, when first seen,
//! and handed in as parsed [`Package`]s. A parsed template keeps where its
//! values sit in its encoding, so each package is a copy of the template's
//! ~12 KB with a few ranges overwritten (see `simbatch_saip::patch`), not a
//! copy of its tree.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use simbatch_core::{Failure, Order};
use simbatch_saip::{derive_opc, personalise_package, Inputs, Package};
use simbatch_store::Store;

/// A template as the workers know it: parsed, or why it cannot be used
/// (a file stored before templates were checked on upload).
pub type LoadedTemplate = Arc<Result<Package, String>>;

/// Templates by name.
pub type Templates = HashMap<String, LoadedTemplate>;

/// Parsed templates, loaded from the store once each (templates never change
/// under a name: adding a name twice is refused).
#[derive(Default)]
pub struct TemplateCache {
    parsed: Mutex<Templates>,
}

impl TemplateCache {
    /// The current templates, loading and parsing names not seen before.
    pub async fn snapshot(
        &self,
        store: &dyn Store,
    ) -> Result<Arc<Templates>, simbatch_store::StoreError> {
        let names = store.template_names().await?;
        let missing: Vec<String> = {
            let parsed = self.parsed.lock().unwrap_or_else(|e| e.into_inner());
            names
                .iter()
                .filter(|n| !parsed.contains_key(*n))
                .cloned()
                .collect()
        };
        for name in missing {
            let Some(bytes) = store.template_content(&name).await? else {
                continue;
            };
            // Parsing is a few hundred microseconds per template, once.
            let loaded = Package::parse_template(&bytes)
                .map(|(p, _)| p)
                .map_err(|e| e.to_string());
            self.parsed
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(name, Arc::new(loaded));
        }
        let parsed = self.parsed.lock().unwrap_or_else(|e| e.into_inner());
        Ok(Arc::new(
            parsed
                .iter()
                .filter(|(n, _)| names.contains(*n))
                .map(|(n, t)| (n.clone(), t.clone()))
                .collect(),
        ))
    }
}

/// The personalisation inputs of a generate_activation_code order.
fn inputs(order: &Order) -> Result<Inputs, Failure> {
    let a = &order.args;
    let missing = |f: &str| Failure {
        code: "missing_field".into(),
        reason: format!("{f} is required to personalise the profile"),
    };
    let ki = *a.ki.as_ref().ok_or_else(|| missing("ki"))?.bytes();
    let opc = match (&a.opc, &a.op) {
        (Some(opc), _) => Some(*opc.bytes()),
        (None, Some(op)) => Some(derive_opc(&ki, op.bytes())),
        (None, None) => None,
    };
    let text = |f: &str| a.text(f).map(str::to_owned);
    Ok(Inputs {
        iccid: order.iccid.to_string(),
        imsi: a.imsi.as_ref().ok_or_else(|| missing("imsi"))?.to_string(),
        ki,
        opc,
        msisdn: a.msisdn.as_ref().map(|m| m.to_string()),
        impi: text("impi"),
        impu: text("impu"),
        pin1: text("pin1"),
        puk1: text("puk1"),
        pin2: text("pin2"),
        puk2: text("puk2"),
        adm1: text("adm1"),
    })
}

/// Personalise `template` for `order`; failures name the field and reason.
pub fn package_for(order: &Order, template: &LoadedTemplate) -> Result<Vec<u8>, Failure> {
    let template = template.as_ref().as_ref().map_err(|reason| Failure {
        code: "template_invalid".into(),
        reason: format!("the template is not a usable profile package: {reason}"),
    })?;
    personalise_package(template, &inputs(order)?).map_err(|e| Failure {
        code: e.code().into(),
        reason: e.to_string(),
    })
}

/// Map `items` with `f` on every core (scoped threads), keeping their order.
/// Small inputs run on the calling thread.
pub fn execute_parallel<T: Send, R: Send>(items: Vec<T>, f: impl Fn(T) -> R + Sync) -> Vec<R> {
    const MIN_PER_THREAD: usize = 64;
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let threads = cores.min(items.len() / MIN_PER_THREAD).max(1);
    if threads == 1 {
        return items.into_iter().map(f).collect();
    }
    let per = items.len().div_ceil(threads);
    let mut parts: Vec<Vec<T>> = Vec::with_capacity(threads);
    let mut it = items.into_iter();
    loop {
        let part: Vec<T> = it.by_ref().take(per).collect();
        if part.is_empty() {
            break;
        }
        parts.push(part);
    }
    let f = &f;
    std::thread::scope(|s| {
        let handles: Vec<_> = parts
            .into_iter()
            .map(|part| s.spawn(move || part.into_iter().map(f).collect::<Vec<R>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parallel_map_keeps_order() {
        for n in [0usize, 1, 63, 64, 200, 1001] {
            let out = execute_parallel((0..n).collect(), |x| x * 2);
            assert_eq!(out, (0..n).map(|x| x * 2).collect::<Vec<_>>());
        }
    }
}
