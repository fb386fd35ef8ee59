//! The language of hookline's templates.

use std::sync::OnceLock;

use liquid_core::Language;
use liquid_lib::stdlib;

use super::{arrays, filters, loops, math, tags};

/// The tags, blocks and filters templates may use: liquid's standard ones, each checking the
/// rendering's budget (loops, `assign`, `capture`, `ifchanged`, `replace`, `join`, `split`,
/// `uniq`, `concat`, `slice` and the arithmetic in budgeted or checked versions), without
/// `include` and `render` (there are no partials to read).
pub fn language() -> &'static Language {
    static LANGUAGE: OnceLock<Language> = OnceLock::new();
    LANGUAGE.get_or_init(|| {
        use filters::{Checked as C, Cost::*};
        use tags::{TickedBlock, TickedTag};
        let mut l = Language::empty();
        let mut tag = |t: Box<dyn liquid_core::ParseTag>| {
            l.tags.register(t.reflection().tag().to_owned(), t);
        };
        tag(Box::new(tags::AssignTag));
        tag(Box::new(TickedTag(stdlib::BreakTag)));
        tag(Box::new(TickedTag(stdlib::ContinueTag)));
        tag(Box::new(tags::EscapedTag(stdlib::CycleTag)));
        tag(Box::new(TickedTag(stdlib::IncrementTag)));
        tag(Box::new(TickedTag(stdlib::DecrementTag)));
        let mut block = |b: Box<dyn liquid_core::ParseBlock>| {
            l.blocks.register(b.reflection().start_tag().to_owned(), b);
        };
        block(Box::new(TickedBlock(stdlib::RawBlock)));
        block(Box::new(TickedBlock(stdlib::IfBlock)));
        block(Box::new(TickedBlock(stdlib::UnlessBlock)));
        block(Box::new(tags::IfChangedBlock));
        block(Box::new(loops::ForBlock));
        block(Box::new(loops::TableRowBlock));
        block(Box::new(TickedBlock(stdlib::CommentBlock)));
        block(Box::new(tags::CaptureBlock));
        block(Box::new(TickedBlock(stdlib::CaseBlock)));
        // Filters over arrays count their steps before they run (`Cost`); the arithmetic is
        // checked; `split`, `replace` and `join` are sized before they build.
        let filters: Vec<Box<dyn liquid_core::ParseFilter>> = vec![
            Box::new(C(math::Abs, Flat)),
            Box::new(C(stdlib::Append, Flat)),
            Box::new(C(stdlib::AtLeast, Flat)),
            Box::new(C(stdlib::AtMost, Flat)),
            Box::new(C(stdlib::Capitalize, Flat)),
            Box::new(C(stdlib::Ceil, Flat)),
            Box::new(C(stdlib::Compact, PerElement)),
            Box::new(C(arrays::Concat, PerElement)),
            Box::new(C(stdlib::Date, Flat)),
            Box::new(C(stdlib::Default, Flat)),
            Box::new(C(math::DIVIDED_BY, Flat)),
            Box::new(C(stdlib::Downcase, Flat)),
            Box::new(C(stdlib::Escape, Flat)),
            Box::new(C(stdlib::EscapeOnce, Flat)),
            Box::new(C(stdlib::First, Flat)),
            Box::new(C(stdlib::Floor, Flat)),
            Box::new(filters::Join),
            Box::new(C(stdlib::Last, Flat)),
            Box::new(C(stdlib::Lstrip, Flat)),
            Box::new(C(stdlib::Map, PerElement)),
            Box::new(C(math::MINUS, Flat)),
            Box::new(C(math::MODULO, Flat)),
            Box::new(C(stdlib::NewlineToBr, Flat)),
            Box::new(C(math::PLUS, Flat)),
            Box::new(C(stdlib::Prepend, Flat)),
            Box::new(C(stdlib::Remove, Flat)),
            Box::new(C(stdlib::RemoveFirst, Flat)),
            Box::new(filters::Replace),
            Box::new(C(stdlib::ReplaceFirst, Flat)),
            Box::new(C(stdlib::Reverse, PerElement)),
            Box::new(C(stdlib::Round, Flat)),
            Box::new(C(stdlib::Rstrip, Flat)),
            Box::new(C(stdlib::Size, Flat)),
            Box::new(C(arrays::Slice, PerElement)),
            Box::new(C(stdlib::Sort, Sorting)),
            Box::new(C(stdlib::SortNatural, Sorting)),
            Box::new(arrays::Split),
            Box::new(C(stdlib::Strip, Flat)),
            Box::new(C(stdlib::StripHtml, Flat)),
            Box::new(C(stdlib::StripNewlines, Flat)),
            Box::new(C(math::TIMES, Flat)),
            Box::new(C(stdlib::Truncate, Flat)),
            Box::new(C(filters::TruncateWords, Flat)),
            Box::new(C(arrays::Uniq, PerElement)),
            Box::new(C(stdlib::Upcase, Flat)),
            Box::new(C(stdlib::UrlDecode, Flat)),
            Box::new(C(stdlib::UrlEncode, Flat)),
            Box::new(C(stdlib::Where, PerElement)),
            Box::new(C(filters::JsonLiteral, Flat)),
            Box::new(C(filters::Raw, Flat)),
            Box::new(C(filters::EscapeJson, Flat)),
            Box::new(C(filters::EscapeUrl, Flat)),
        ];
        for f in filters {
            l.filters.register(f.reflection().name().to_owned(), f);
        }
        l
    })
}
