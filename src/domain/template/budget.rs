//! What one rendering may spend, kept in the liquid runtime's registers and checked by every
//! budgeted tag, block, filter and writer as the rendering runs: loop iterations, the size of
//! each value and of the output, the bytes produced in all (values and output together), and
//! the time.

use std::{io, time::Instant};

use liquid_core::{Error, Result, Runtime, Value, ValueView, runtime::Registers};

use super::{Context, Limits};

/// Bytes one rendering may produce in all (filter results, assigned and captured values,
/// output), as a multiple of the rendered-size limit: it bounds the memory one rendering holds.
pub const PRODUCED_FACTOR: usize = 16;

/// Bytes counted for each element of an array or object value besides its contents.
pub const ELEMENT_WEIGHT: usize = 32;

/// The budget of one rendering. The default one (a rendering that was not armed) refuses
/// everything, so that a budgeted tag never runs unbounded.
#[derive(Debug, Default)]
pub struct Budget {
    active: Option<Active>,
}

#[derive(Debug)]
struct Active {
    limits: Limits,
    context: Context,
    deadline: Instant,
    iterations: usize,
    produced: usize,
    /// Why the rendering was stopped; once set, every check fails.
    exceeded: Option<String>,
}

impl Budget {
    /// A budget for a rendering that starts now.
    pub fn start(limits: Limits, context: Context) -> Self {
        Self {
            active: Some(Active {
                limits,
                context,
                deadline: Instant::now() + limits.timeout,
                iterations: 0,
                produced: 0,
                exceeded: None,
            }),
        }
    }

    /// The same limits and clock, for a template of another context.
    pub fn with_context(mut self, context: Context) -> Self {
        if let Some(active) = &mut self.active {
            active.context = context;
        }
        self
    }

    /// Why the rendering was stopped, if it was.
    pub fn exceeded(&self) -> Option<&str> {
        match &self.active {
            Some(active) => active.exceeded.as_deref(),
            None => Some("rendering without a budget"),
        }
    }

    /// The loop iterations and bytes produced so far.
    pub fn spent(&self) -> (usize, usize) {
        self.active.as_ref().map_or((0, 0), |a| (a.iterations, a.produced))
    }

    fn check(&mut self, charge: impl FnOnce(&mut Active) -> Option<String>) -> Result<()> {
        let Some(active) = &mut self.active else {
            return Err(Error::with_msg("rendering without a budget"));
        };
        if let Some(reason) = &active.exceeded {
            return Err(Error::with_msg(reason.clone()));
        }
        let reason = charge(active).or_else(|| {
            (Instant::now() >= active.deadline).then(|| {
                format!(
                    "rendering took longer than {} ms (HOOKLINE_TEMPLATE_TIMEOUT)",
                    active.limits.timeout.as_millis()
                )
            })
        });
        match reason {
            Some(reason) => {
                active.exceeded = Some(reason.clone());
                Err(Error::with_msg(reason))
            }
            None => Ok(()),
        }
    }
}

/// Sets the budget of the rendering that `runtime` runs.
pub fn arm(runtime: &dyn Runtime, budget: Budget) {
    *runtime.registers().get_mut::<Budget>() = budget;
}

/// Takes the budget back once the rendering is over.
pub fn disarm(runtime: &dyn Runtime) -> Budget {
    std::mem::take(&mut *runtime.registers().get_mut::<Budget>())
}

/// Fails once the time is up (or the rendering was stopped).
pub fn tick(runtime: &dyn Runtime) -> Result<()> {
    tick_in(runtime.registers())
}

fn tick_in(registers: &Registers) -> Result<()> {
    registers.get_mut::<Budget>().check(|_| None)
}

/// Counts one loop iteration.
pub fn iterate(runtime: &dyn Runtime) -> Result<()> {
    steps(runtime, 1, "")
}

/// Counts the steps a filter is about to take over an array (one per element, n·log₂n for a
/// sort) against the same budget as loop iterations, before it runs: `filter` names it.
pub fn work(runtime: &dyn Runtime, count: usize, filter: &str) -> Result<()> {
    steps(runtime, count, &format!("; `{filter}` counts its steps over the array's elements"))
}

/// Adds `count` steps, unless that goes past the limit: then the rendering is stopped and the
/// steps are not counted (so what was spent never exceeds the limit by more than one).
fn steps(runtime: &dyn Runtime, count: usize, why: &str) -> Result<()> {
    runtime.registers().get_mut::<Budget>().check(|active| {
        let total = active.iterations.saturating_add(count);
        if total > active.limits.max_iterations {
            return Some(format!(
                "more than {} loop iterations in one rendering (HOOKLINE_TEMPLATE_MAX_ITERATIONS{why})",
                active.limits.max_iterations
            ));
        }
        active.iterations = total;
        None
    })
}

/// Counts a value of `bytes` produced by a filter, an `assign` or a `capture`: it may be no
/// larger than a rendering, and adds to the bytes produced in all.
pub fn produce(runtime: &dyn Runtime, bytes: usize) -> Result<()> {
    produce_in(runtime.registers(), bytes, true)
}

fn produce_in(registers: &Registers, bytes: usize, one_value: bool) -> Result<()> {
    registers.get_mut::<Budget>().check(|active| {
        let max = active.limits.max_rendered;
        if one_value && bytes > max {
            return Some(format!("a value of more than {max} bytes (HOOKLINE_MAX_RENDERED_SIZE)"));
        }
        active.produced = active.produced.saturating_add(bytes);
        let cap = max.saturating_mul(PRODUCED_FACTOR);
        (active.produced > cap).then(|| {
            format!("more than {cap} bytes produced in one rendering ({PRODUCED_FACTOR} × HOOKLINE_MAX_RENDERED_SIZE)")
        })
    })
}

/// Whether a value of `bytes` would fit, checked before it is built.
pub fn fits(runtime: &dyn Runtime, bytes: Option<usize>) -> Result<()> {
    runtime.registers().get_mut::<Budget>().check(|active| {
        let max = active.limits.max_rendered;
        bytes
            .is_none_or(|bytes| bytes > max)
            .then(|| format!("a value of more than {max} bytes (HOOKLINE_MAX_RENDERED_SIZE)"))
    })
}

/// The context the rendering's output goes to.
pub fn context(runtime: &dyn Runtime) -> Context {
    runtime.registers().get_mut::<Budget>().active.as_ref().map_or(Context::Text, |active| active.context)
}

/// The bytes a value holds, counting each element of an array or object.
pub fn weight(value: &dyn ValueView) -> usize {
    if let Some(array) = value.as_array() {
        array.values().fold(0usize, |sum, v| sum.saturating_add(weight(v)).saturating_add(ELEMENT_WEIGHT))
    } else if let Some(object) = value.as_object() {
        object.iter().fold(0usize, |sum, (k, v)| {
            sum.saturating_add(k.len()).saturating_add(weight(v)).saturating_add(ELEMENT_WEIGHT)
        })
    } else if let Some(scalar) = value.as_scalar() {
        scalar.to_kstr().len()
    } else {
        0
    }
}

/// Charges a produced value and gives it back.
pub fn charged(runtime: &dyn Runtime, value: Value) -> Result<Value> {
    produce(runtime, weight(&value))?;
    Ok(value)
}

/// A writer that holds at most `cap` bytes and charges what it takes to the budget.
pub struct Limited<'r> {
    pub buffer: Vec<u8>,
    cap: usize,
    registers: &'r Registers,
}

impl<'r> Limited<'r> {
    pub fn new(runtime: &'r dyn Runtime) -> Self {
        let cap = runtime.registers().get_mut::<Budget>().active.as_ref().map_or(0, |a| a.limits.max_rendered);
        Self { buffer: Vec::new(), cap, registers: runtime.registers() }
    }

    pub fn into_string(self) -> String {
        String::from_utf8(self.buffer).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
    }
}

impl io::Write for Limited<'_> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let refused = |e: Error| io::Error::other(e.to_string());
        if self.buffer.len().saturating_add(bytes.len()) > self.cap {
            let mut budget = self.registers.get_mut::<Budget>();
            let cap = self.cap;
            let _ = budget.check(|_| Some(format!("renders to more than {cap} bytes (HOOKLINE_MAX_RENDERED_SIZE)")));
            return Err(io::Error::other("output limit"));
        }
        produce_in(self.registers, bytes.len(), false).map_err(refused)?;
        self.buffer.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
