//! The arithmetic filters with checked whole-number arithmetic: liquid's own `plus`, `minus`,
//! `times` and `abs` overflow (a panic in a debug build) and `divided_by: -1` of the smallest
//! whole number panics in any build. Here an overflow is a rendering error that says so.
//! Fractional numbers behave as liquid's.

use std::fmt;

use liquid_core::{
    Display_filter, Error, Expression, Filter, FilterParameters, FilterReflection, ParseFilter, Result, Runtime, Value,
    ValueView,
    parser::{FilterArguments, FilterParametersReflection, ParameterReflection},
};

#[derive(Debug, FilterParameters)]
struct OperandArgs {
    #[parameter(description = "The other number.")]
    operand: Expression,
}

/// Whole numbers when both are whole, else fractional ones, as liquid does; `whole` is `None`
/// on overflow.
fn arithmetic(
    name: &str,
    input: &dyn ValueView,
    operand: &dyn ValueView,
    whole: fn(i64, i64) -> Option<i64>,
    fractional: fn(f64, f64) -> f64,
) -> Result<Value> {
    let input = input.as_scalar().ok_or_else(|| Error::with_msg(format!("{name}: a number expected")))?;
    let operand =
        operand.as_scalar().ok_or_else(|| Error::with_msg(format!("{name}: a number expected as operand")))?;
    if let (Some(a), Some(b)) = (input.to_integer(), operand.to_integer()) {
        return whole(a, b).map(Value::scalar).ok_or_else(|| {
            Error::with_msg(format!("{name}: {a} and {b} give a whole number out of range (overflow)"))
        });
    }
    match (input.to_float(), operand.to_float()) {
        (Some(a), Some(b)) => Ok(Value::scalar(fractional(a, b))),
        _ => Err(Error::with_msg(format!("{name}: a number expected"))),
    }
}

/// Refuses a zero divisor, as liquid does.
fn divisor(name: &str, operand: &dyn ValueView) -> Result<()> {
    let zero = operand.as_scalar().is_some_and(|o| match o.to_integer() {
        Some(i) => i == 0,
        None => o.to_float() == Some(0.0),
    });
    if zero { Err(Error::with_msg(format!("{name}: can't divide by zero"))) } else { Ok(()) }
}

/// A filter of two numbers.
#[derive(Clone, Copy)]
pub struct Binary {
    name: &'static str,
    description: &'static str,
    /// Whether a zero operand is refused.
    divides: bool,
    whole: fn(i64, i64) -> Option<i64>,
    fractional: fn(f64, f64) -> f64,
}

pub const PLUS: Binary = Binary {
    name: "plus",
    description: "Adds a number.",
    divides: false,
    whole: i64::checked_add,
    fractional: |a, b| a + b,
};
pub const MINUS: Binary = Binary {
    name: "minus",
    description: "Subtracts a number.",
    divides: false,
    whole: i64::checked_sub,
    fractional: |a, b| a - b,
};
pub const TIMES: Binary = Binary {
    name: "times",
    description: "Multiplies by a number.",
    divides: false,
    whole: i64::checked_mul,
    fractional: |a, b| a * b,
};
pub const DIVIDED_BY: Binary = Binary {
    name: "divided_by",
    description: "Divides by a number.",
    divides: true,
    whole: i64::checked_div,
    fractional: |a, b| a / b,
};
/// The remainder of the smallest whole number by -1 is 0, not an overflow.
pub const MODULO: Binary = Binary {
    name: "modulo",
    description: "The remainder of a division by a number.",
    divides: true,
    whole: |a, b| a.checked_rem(b).or(Some(0)),
    fractional: |a, b| a % b,
};

impl FilterReflection for Binary {
    fn name(&self) -> &str {
        self.name
    }

    fn description(&self) -> &str {
        self.description
    }

    fn positional_parameters(&self) -> &'static [ParameterReflection] {
        OperandArgs::positional_parameters()
    }

    fn keyword_parameters(&self) -> &'static [ParameterReflection] {
        OperandArgs::keyword_parameters()
    }
}

impl ParseFilter for Binary {
    fn parse(&self, arguments: FilterArguments<'_>) -> Result<Box<dyn Filter>> {
        Ok(Box::new(BinaryFilter { op: *self, args: OperandArgs::from_args(arguments)? }))
    }

    fn reflection(&self) -> &dyn FilterReflection {
        self
    }
}

struct BinaryFilter {
    op: Binary,
    args: OperandArgs,
}

impl fmt::Debug for BinaryFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BinaryFilter").field("name", &self.op.name).field("args", &self.args).finish()
    }
}

impl fmt::Display for BinaryFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.op.name, self.args)
    }
}

impl Filter for BinaryFilter {
    fn evaluate(&self, input: &dyn ValueView, runtime: &dyn Runtime) -> Result<Value> {
        let args = self.args.evaluate(runtime)?;
        let op = &self.op;
        if op.divides {
            divisor(op.name, args.operand.as_view())?;
        }
        arithmetic(op.name, input, args.operand.as_view(), op.whole, op.fractional)
    }
}

#[derive(Clone, ParseFilter, FilterReflection)]
#[filter(name = "abs", description = "The absolute value of a number.", parsed(AbsFilter))]
pub struct Abs;

#[derive(Debug, Default, Display_filter)]
#[name = "abs"]
struct AbsFilter;

impl Filter for AbsFilter {
    fn evaluate(&self, input: &dyn ValueView, _runtime: &dyn Runtime) -> Result<Value> {
        let scalar = input.as_scalar().ok_or_else(|| Error::with_msg("abs: a number expected"))?;
        if let Some(i) = scalar.to_integer() {
            return i
                .checked_abs()
                .map(Value::scalar)
                .ok_or_else(|| Error::with_msg(format!("abs: {i} gives a whole number out of range (overflow)")));
        }
        scalar.to_float().map(|f| Value::scalar(f.abs())).ok_or_else(|| Error::with_msg("abs: a number expected"))
    }
}
