//! Budgeted tags and blocks besides the loops: `assign` and `capture` charge the values they
//! keep, `capture` and `ifchanged` render into a bounded buffer, `cycle` prints escaped for
//! the output's context (raw inside a `capture`, whose value is escaped where it is printed),
//! and every other standard tag and block checks the clock first.

use std::io::Write;

use liquid_core::{
    BlockReflection, Language, ParseBlock, ParseTag, Renderable, Result, Runtime, TagBlock, TagReflection,
    TagTokenIter, Template,
    error::ResultLiquidReplaceExt,
    model::{KString, Value},
    parser::FilterChain,
};

use super::{Context, budget, filters};

/// A renderable that checks the rendering's clock before it runs.
#[derive(Debug)]
struct Ticked(Box<dyn Renderable>);

impl Renderable for Ticked {
    fn render_to(&self, writer: &mut dyn Write, runtime: &dyn Runtime) -> Result<()> {
        budget::tick(runtime)?;
        self.0.render_to(writer, runtime)
    }
}

/// A standard tag that checks the clock before it runs.
#[derive(Clone)]
pub struct TickedTag<T>(pub T);

impl<T: ParseTag + Clone + 'static> ParseTag for TickedTag<T> {
    fn parse(&self, arguments: TagTokenIter<'_>, options: &Language) -> Result<Box<dyn Renderable>> {
        Ok(Box::new(Ticked(self.0.parse(arguments, options)?)))
    }

    fn reflection(&self) -> &dyn TagReflection {
        self.0.reflection()
    }
}

/// A standard block that checks the clock before it runs.
#[derive(Clone)]
pub struct TickedBlock<B>(pub B);

impl<B: ParseBlock + Clone + 'static> ParseBlock for TickedBlock<B> {
    fn parse(
        &self,
        arguments: TagTokenIter<'_>,
        block: TagBlock<'_, '_>,
        options: &Language,
    ) -> Result<Box<dyn Renderable>> {
        Ok(Box::new(Ticked(self.0.parse(arguments, block, options)?)))
    }

    fn reflection(&self) -> &dyn BlockReflection {
        self.0.reflection()
    }
}

/// A tag whose output is escaped for the context, as `{{ … }}` is (`cycle` prints values).
#[derive(Clone)]
pub struct EscapedTag<T>(pub T);

impl<T: ParseTag + Clone + 'static> ParseTag for EscapedTag<T> {
    fn parse(&self, arguments: TagTokenIter<'_>, options: &Language) -> Result<Box<dyn Renderable>> {
        Ok(Box::new(Escaped(self.0.parse(arguments, options)?)))
    }

    fn reflection(&self) -> &dyn TagReflection {
        self.0.reflection()
    }
}

#[derive(Debug)]
struct Escaped(Box<dyn Renderable>);

impl Renderable for Escaped {
    fn render_to(&self, writer: &mut dyn Write, runtime: &dyn Runtime) -> Result<()> {
        budget::tick(runtime)?;
        let mut printed = budget::Limited::new(runtime);
        self.0.render_to(&mut printed, runtime)?;
        let printed = printed.into_string();
        let escaped = match budget::context(runtime) {
            _ if capturing(runtime) => printed,
            Context::Json => filters::json_string(&printed),
            Context::Url => filters::percent_encoded(&printed),
            Context::Text | Context::Header => printed,
        };
        budget::produce(runtime, escaped.len())?;
        writer.write_all(escaped.as_bytes()).replace("Failed to render")
    }
}

#[derive(Copy, Clone, Debug, Default)]
pub struct AssignTag;

impl TagReflection for AssignTag {
    fn tag(&self) -> &str {
        "assign"
    }

    fn description(&self) -> &str {
        "Sets a variable; the value counts against the rendering's budget."
    }
}

impl ParseTag for AssignTag {
    fn parse(&self, mut arguments: TagTokenIter<'_>, options: &Language) -> Result<Box<dyn Renderable>> {
        let name = arguments.expect_next("Identifier expected.")?.expect_identifier().into_result()?;
        let name = KString::from_ref(name);
        arguments
            .expect_next("Assignment operator \"=\" expected.")?
            .expect_str("=")
            .into_result_custom_msg("Assignment operator \"=\" expected.")?;
        let value = arguments.expect_next("FilterChain expected.")?.expect_filter_chain(options).into_result()?;
        arguments.expect_nothing()?;
        Ok(Box::new(Assign { name, value }))
    }

    fn reflection(&self) -> &dyn TagReflection {
        self
    }
}

#[derive(Debug)]
struct Assign {
    name: KString,
    value: FilterChain,
}

impl Renderable for Assign {
    fn render_to(&self, _writer: &mut dyn Write, runtime: &dyn Runtime) -> Result<()> {
        budget::tick(runtime)?;
        let value = self.value.evaluate(runtime)?;
        budget::produce(runtime, budget::weight(value.as_view()))?;
        runtime.set_global(self.name.clone(), value.into_owned());
        Ok(())
    }
}

/// How many `capture` blocks are rendering, one inside the other.
#[derive(Debug, Default)]
struct Capturing(usize);

/// Whether the rendering is inside a `capture`: there nothing is escaped (neither `{{ … }}`
/// nor `cycle`), because the captured value is escaped once, where it is printed.
pub fn capturing(runtime: &dyn Runtime) -> bool {
    runtime.registers().get_mut::<Capturing>().0 > 0
}

#[derive(Copy, Clone, Debug, Default)]
pub struct CaptureBlock;

block_reflection!(
    CaptureBlock,
    "capture",
    "endcapture",
    "Renders its body into a variable, within the rendering's budget."
);

impl ParseBlock for CaptureBlock {
    fn parse(
        &self,
        mut arguments: TagTokenIter<'_>,
        mut tokens: TagBlock<'_, '_>,
        options: &Language,
    ) -> Result<Box<dyn Renderable>> {
        let name = arguments.expect_next("Identifier expected")?.expect_identifier().into_result()?;
        let name = KString::from_ref(name);
        arguments.expect_nothing()?;
        let body = Template::new(tokens.parse_all(options)?);
        tokens.assert_empty();
        Ok(Box::new(Capture { name, body }))
    }

    fn reflection(&self) -> &dyn BlockReflection {
        self
    }
}

#[derive(Debug)]
struct Capture {
    name: KString,
    body: Template,
}

impl Renderable for Capture {
    fn render_to(&self, _writer: &mut dyn Write, runtime: &dyn Runtime) -> Result<()> {
        budget::tick(runtime)?;
        let mut captured = budget::Limited::new(runtime);
        {
            let mut depth = runtime.registers().get_mut::<Capturing>();
            depth.0 = depth.0.saturating_add(1);
        }
        let rendered = self.body.render_to(&mut captured, runtime);
        {
            let mut depth = runtime.registers().get_mut::<Capturing>();
            depth.0 = depth.0.saturating_sub(1);
        }
        rendered?;
        runtime.set_global(self.name.clone(), Value::scalar(captured.into_string()));
        Ok(())
    }
}

#[derive(Copy, Clone, Debug, Default)]
pub struct IfChangedBlock;

block_reflection!(
    IfChangedBlock,
    "ifchanged",
    "endifchanged",
    "Prints its body when it differs from the last time, within the rendering's budget."
);

impl ParseBlock for IfChangedBlock {
    fn parse(
        &self,
        mut arguments: TagTokenIter<'_>,
        mut tokens: TagBlock<'_, '_>,
        options: &Language,
    ) -> Result<Box<dyn Renderable>> {
        arguments.expect_nothing()?;
        let body = Template::new(tokens.parse_all(options)?);
        tokens.assert_empty();
        Ok(Box::new(IfChanged { body }))
    }

    fn reflection(&self) -> &dyn BlockReflection {
        self
    }
}

#[derive(Debug)]
struct IfChanged {
    body: Template,
}

/// The last body an `ifchanged` printed.
#[derive(Debug, Default)]
struct LastPrinted(Option<String>);

impl Renderable for IfChanged {
    fn render_to(&self, writer: &mut dyn Write, runtime: &dyn Runtime) -> Result<()> {
        budget::tick(runtime)?;
        let mut rendered = budget::Limited::new(runtime);
        self.body.render_to(&mut rendered, runtime)?;
        let rendered = rendered.into_string();
        let changed = {
            let mut last = runtime.registers().get_mut::<LastPrinted>();
            let changed = last.0.as_deref() != Some(rendered.as_str());
            if changed {
                last.0 = Some(rendered.clone());
            }
            changed
        };
        if changed {
            writer.write_all(rendered.as_bytes()).replace("Failed to render")?;
        }
        Ok(())
    }
}
