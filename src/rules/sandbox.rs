//! The one sandboxed Rhai engine the rules of a load share: limits from
//! `[rules]`, no `import` and no `eval` (both refused when a rule is
//! compiled, so `check` reports them with their position), strict
//! variables, `print`/`debug` to tracing with the speaking rule's name, and
//! the `w`/event API. It runs nothing itself.

use std::cell::RefCell;
use std::sync::Arc;

use rhai::module_resolvers::DummyModuleResolver;
use rhai::{Engine, EvalAltResult, ImmutableString, FLOAT, INT};

use super::script_api;
use crate::config::RulesConfig;

thread_local! {
    /// The rule whose script runs on this thread, so `print`/`debug` (whose
    /// callbacks Rhai gives no context) can say which rule spoke.
    static CURRENT_RULE: RefCell<Option<Arc<str>>> = const { RefCell::new(None) };
}

/// Marks `name` as the running rule until dropped.
pub(crate) struct Running(Option<Arc<str>>);

impl Running {
    pub(crate) fn enter(name: &Arc<str>) -> Running {
        Running(CURRENT_RULE.with(|c| c.replace(Some(name.clone()))))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        CURRENT_RULE.with(|c| *c.borrow_mut() = self.0.take());
    }
}

fn current_rule() -> Arc<str> {
    CURRENT_RULE.with(|c| c.borrow().clone().unwrap_or_else(|| Arc::from("?")))
}

/// The sandboxed engine every rule of one load shares.
pub fn build_engine(cfg: &RulesConfig) -> Engine {
    let mut engine = Engine::new();
    engine
        .set_max_operations(cfg.max_operations)
        .set_max_expr_depths(cfg.max_expr_depth, cfg.max_expr_depth)
        .set_max_call_levels(cfg.max_call_depth)
        .set_max_string_size(cfg.max_string_size)
        .set_max_array_size(cfg.max_array_size)
        .set_max_map_size(cfg.max_map_size)
        // `import` is disabled below; the resolver that finds nothing stays
        // as a second wall.
        .set_module_resolver(DummyModuleResolver::new())
        .set_strict_variables(true)
        // Fast operators answer `3 > "3"` with a built-in `false` before
        // looking at registered functions; without them the refusals
        // below are found.
        .set_fast_operators(false)
        .disable_symbol("eval")
        .disable_symbol("import")
        .on_print(|text| tracing::info!(rule = %current_rule(), "{text}"))
        .on_debug(
            |text, _source, pos| tracing::debug!(rule = %current_rule(), position = %pos, "{text}"),
        );
    script_api::register(&mut engine);
    refuse_number_string_comparisons(&mut engine);
    engine
}

/// Comparison operators.
const COMPARISONS: [&str; 6] = ["==", "!=", "<", "<=", ">", ">="];

/// Makes comparing a number with a string a script error. Rhai's own
/// answer is `false` (`true` for `!=`), which turns `w.count() > "3"`
/// into a rule that silently never fires.
fn refuse_number_string_comparisons(engine: &mut Engine) {
    for op in COMPARISONS {
        refuse::<INT, ImmutableString>(engine, op);
        refuse::<ImmutableString, INT>(engine, op);
        refuse::<FLOAT, ImmutableString>(engine, op);
        refuse::<ImmutableString, FLOAT>(engine, op);
    }
}

fn refuse<A, B>(engine: &mut Engine, op: &'static str)
where
    A: Clone + Send + Sync + std::fmt::Debug + 'static,
    B: Clone + Send + Sync + std::fmt::Debug + 'static,
{
    engine.register_fn(op, move |a: A, b: B| -> Result<bool, Box<EvalAltResult>> {
        Err(format!(
            "cannot compare a number with a string: {a:?} {op} {b:?} \
             (convert one side, e.g. parse_int(s) or n.to_string())"
        )
        .into())
    });
}
