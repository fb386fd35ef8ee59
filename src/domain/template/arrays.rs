//! Budgeted versions of the standard filters that build or walk arrays in a way the wrapper
//! cannot bound from outside: `split` (its result is sized before it is built), `uniq` (by
//! hashing, where liquid's compares every pair), `concat` (its argument counts too) and
//! `slice` (without the overflow of liquid's offset arithmetic).

use std::{collections::HashSet, fmt::Write as _};

use liquid_core::{
    Display_filter, Expression, Filter, FilterParameters, FilterReflection, FromFilterParameters, ParseFilter, Result,
    Runtime, Value, ValueView,
};

use super::{
    budget::{self, ELEMENT_WEIGHT},
    filters::elements,
};

#[derive(Debug, FilterParameters)]
struct SplitArgs {
    #[parameter(description = "The separator between the pieces.", arg_type = "str")]
    pattern: Expression,
}

#[derive(Clone, ParseFilter, FilterReflection)]
#[filter(
    name = "split",
    description = "Divides a string into an array at each separator, within the rendering's budget.",
    parameters(SplitArgs),
    parsed(SplitFilter)
)]
pub struct Split;

#[derive(Debug, FromFilterParameters, Display_filter)]
#[name = "split"]
struct SplitFilter {
    #[parameters]
    args: SplitArgs,
}

/// The weight of the array `split` makes of `input`, known before it is built: every piece
/// and every element's own weight.
pub(super) fn split_weight(input: &str, pattern: &str) -> Option<usize> {
    let separators = input.matches(pattern).count();
    let bytes = input.len().checked_sub(separators.checked_mul(pattern.len())?)?;
    separators.checked_add(1)?.checked_mul(ELEMENT_WEIGHT)?.checked_add(bytes)
}

impl Filter for SplitFilter {
    fn evaluate(&self, input: &dyn ValueView, runtime: &dyn Runtime) -> Result<Value> {
        budget::tick(runtime)?;
        let args = self.args.evaluate(runtime)?;
        let input = input.to_kstr();
        if input.is_empty() {
            return Ok(Value::Array(Vec::new()));
        }
        let pattern = args.pattern.as_str();
        budget::fits(runtime, split_weight(input.as_str(), pattern))?;
        let pieces = input.split(pattern).map(|s| Value::scalar(s.to_owned())).collect();
        budget::charged(runtime, Value::Array(pieces))
    }
}

#[derive(Clone, ParseFilter, FilterReflection)]
#[filter(
    name = "uniq",
    description = "Removes duplicate elements of an array, within the rendering's budget.",
    parsed(UniqFilter)
)]
pub struct Uniq;

#[derive(Debug, Default, Display_filter)]
#[name = "uniq"]
struct UniqFilter;

/// A text that is the same for equal values: numbers by value (`1` and `1.0` alike), strings,
/// booleans and dates by type and text, arrays element by element, objects by sorted keys.
fn key(value: &dyn ValueView, out: &mut String) {
    if let Some(array) = value.as_array() {
        let _ = write!(out, "a{}[", array.size());
        array.values().for_each(|v| key(v, out));
        out.push(']');
    } else if let Some(object) = value.as_object() {
        let mut fields: Vec<_> = object.iter().collect();
        fields.sort_by(|a, b| a.0.cmp(&b.0));
        let _ = write!(out, "o{}{{", fields.len());
        for (name, v) in fields {
            let _ = write!(out, "{}:{name}", name.len());
            key(v, out);
        }
        out.push('}');
    } else if let Some(scalar) = value.as_scalar() {
        match (value.type_name(), scalar.to_float()) {
            ("whole number", _) => {
                let _ = write!(out, "i{};", scalar.to_kstr());
            }
            // Exactly representable whole values equal the whole number (`1.0` is `1`).
            ("fractional number", Some(f)) if f.fract() == 0.0 && f.abs() < 9.0e15 => {
                let _ = write!(out, "i{};", f as i64);
            }
            ("fractional number", Some(f)) => {
                let _ = write!(out, "f{f};");
            }
            (kind, _) => {
                let text = scalar.to_kstr();
                let _ = write!(out, "{kind}{}:{text}", text.len());
            }
        }
    } else {
        out.push_str("nil;");
    }
}

impl Filter for UniqFilter {
    fn evaluate(&self, input: &dyn ValueView, _runtime: &dyn Runtime) -> Result<Value> {
        let array = input.as_array().ok_or_else(|| liquid_core::Error::with_msg("Array expected"))?;
        let mut seen = HashSet::new();
        let mut kept = Vec::new();
        for value in array.values() {
            let mut text = String::new();
            key(value, &mut text);
            if seen.insert(text) {
                kept.push(value.to_value());
            }
        }
        Ok(Value::array(kept))
    }
}

#[derive(Debug, FilterParameters)]
struct ConcatArgs {
    #[parameter(description = "The array to concatenate the input with.")]
    array: Expression,
}

#[derive(Clone, ParseFilter, FilterReflection)]
#[filter(
    name = "concat",
    description = "Concatenates the input array with a given array, within the rendering's budget.",
    parameters(ConcatArgs),
    parsed(ConcatFilter)
)]
pub struct Concat;

#[derive(Debug, FromFilterParameters, Display_filter)]
#[name = "concat"]
struct ConcatFilter {
    #[parameters]
    args: ConcatArgs,
}

impl Filter for ConcatFilter {
    fn evaluate(&self, input: &dyn ValueView, runtime: &dyn Runtime) -> Result<Value> {
        let args = self.args.evaluate(runtime)?;
        let input = input.as_array().ok_or_else(|| liquid_core::Error::with_msg("Array expected"))?;
        let other = args.array.as_array().ok_or_else(|| liquid_core::Error::with_msg("Array expected as argument"))?;
        // The input's elements were counted by the wrapper; the argument's count too.
        budget::work(runtime, elements(args.array.as_view()), "concat")?;
        Ok(Value::array(input.values().chain(other.values()).map(|v| v.to_value())))
    }
}

#[derive(Debug, FilterParameters)]
struct SliceArgs {
    #[parameter(description = "Where the slice starts (from the end when negative).", arg_type = "integer")]
    offset: Expression,
    #[parameter(description = "The length of the slice (1 when not given).", arg_type = "integer")]
    length: Option<Expression>,
}

#[derive(Clone, ParseFilter, FilterReflection)]
#[filter(
    name = "slice",
    description = "Takes a part of a string or an array.",
    parameters(SliceArgs),
    parsed(SliceFilter)
)]
pub struct Slice;

#[derive(Debug, FromFilterParameters, Display_filter)]
#[name = "slice"]
struct SliceFilter {
    #[parameters]
    args: SliceArgs,
}

/// The start and length of the part of a sequence of `len` items that liquid's `slice` takes;
/// `None` when it is empty. Never overflows.
fn window(offset: i64, length: i64, len: usize) -> Option<(usize, usize)> {
    let len = i64::try_from(len).unwrap_or(i64::MAX);
    let start = if offset < 0 { offset.checked_add(len)? } else { offset.min(len) };
    let start = usize::try_from(start).ok()?;
    let room = usize::try_from(len).ok()?.checked_sub(start)?;
    Some((start, usize::try_from(length).ok()?.min(room)))
}

impl Filter for SliceFilter {
    fn evaluate(&self, input: &dyn ValueView, runtime: &dyn Runtime) -> Result<Value> {
        let args = self.args.evaluate(runtime)?;
        let length = args.length.unwrap_or(1);
        if length < 1 {
            return Err(liquid_core::Error::with_msg("slice: the length must be a positive number"));
        }
        if let Some(array) = input.as_array() {
            let size = usize::try_from(array.size()).unwrap_or(usize::MAX);
            let (start, take) = window(args.offset, length, size).unwrap_or((0, 0));
            Ok(Value::array(array.values().skip(start).take(take).map(|v| v.to_value())))
        } else {
            let text = input.to_kstr();
            let (start, take) = window(args.offset, length, text.chars().count()).unwrap_or((0, 0));
            Ok(Value::scalar(text.chars().skip(start).take(take).collect::<String>()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_is_sized_before_it_is_built() {
        assert_eq!(split_weight("a,b,c", ","), Some(3 + 3 * ELEMENT_WEIGHT));
        // Every character is a piece, with an empty one at each end.
        assert_eq!(split_weight("abc", ""), Some(3 + 5 * ELEMENT_WEIGHT));
        assert_eq!("abc".split("").count(), 5);
    }

    #[test]
    fn slice_windows_never_overflow() {
        assert_eq!(window(1, i64::MAX, 3), Some((1, 2)));
        assert_eq!(window(i64::MAX, i64::MAX, 3), Some((3, 0)));
        assert_eq!(window(-1, 1, 3), Some((2, 1)));
        assert_eq!(window(-4, 1, 3), None);
        assert_eq!(window(i64::MIN, 1, 3), None);
    }
}
