//! The one sandboxed Rhai engine the rules of a load share: limits from
//! `[rules]`, no `import` and no `eval` (both refused when a rule is
//! compiled, so `check` reports them with their position), strict
//! variables, `print`/`debug` to tracing with the speaking rule's name, and
//! the `w`/event API. It runs nothing itself.

use std::cell::RefCell;
use std::sync::Arc;

use rhai::module_resolvers::DummyModuleResolver;
use rhai::Engine;

use super::api;
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
        .disable_symbol("eval")
        .disable_symbol("import")
        .on_print(|text| tracing::info!(rule = %current_rule(), "{text}"))
        .on_debug(
            |text, _source, pos| tracing::debug!(rule = %current_rule(), position = %pos, "{text}"),
        );
    api::register(&mut engine);
    engine
}
