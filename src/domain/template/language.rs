//! The language of hookline's templates.

use std::sync::OnceLock;

use liquid_core::Language;
use liquid_lib::stdlib;

use super::{filters, loops, tags};

/// The tags, blocks and filters templates may use: liquid's standard ones, each checking the
/// rendering's budget (loops, `assign`, `capture`, `ifchanged`, `replace` and `join` in
/// budgeted versions), without `include` and `render` (there are no partials to read).
pub fn language() -> &'static Language {
    static LANGUAGE: OnceLock<Language> = OnceLock::new();
    LANGUAGE.get_or_init(|| {
        use filters::Checked as C;
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
        let filters: Vec<Box<dyn liquid_core::ParseFilter>> = vec![
            Box::new(C(stdlib::Abs)),
            Box::new(C(stdlib::Append)),
            Box::new(C(stdlib::AtLeast)),
            Box::new(C(stdlib::AtMost)),
            Box::new(C(stdlib::Capitalize)),
            Box::new(C(stdlib::Ceil)),
            Box::new(C(stdlib::Compact)),
            Box::new(C(stdlib::Concat)),
            Box::new(C(stdlib::Date)),
            Box::new(C(stdlib::Default)),
            Box::new(C(stdlib::DividedBy)),
            Box::new(C(stdlib::Downcase)),
            Box::new(C(stdlib::Escape)),
            Box::new(C(stdlib::EscapeOnce)),
            Box::new(C(stdlib::First)),
            Box::new(C(stdlib::Floor)),
            Box::new(filters::Join),
            Box::new(C(stdlib::Last)),
            Box::new(C(stdlib::Lstrip)),
            Box::new(C(stdlib::Map)),
            Box::new(C(stdlib::Minus)),
            Box::new(C(stdlib::Modulo)),
            Box::new(C(stdlib::NewlineToBr)),
            Box::new(C(stdlib::Plus)),
            Box::new(C(stdlib::Prepend)),
            Box::new(C(stdlib::Remove)),
            Box::new(C(stdlib::RemoveFirst)),
            Box::new(filters::Replace),
            Box::new(C(stdlib::ReplaceFirst)),
            Box::new(C(stdlib::Reverse)),
            Box::new(C(stdlib::Round)),
            Box::new(C(stdlib::Rstrip)),
            Box::new(C(stdlib::Size)),
            Box::new(C(stdlib::Slice)),
            Box::new(C(stdlib::Sort)),
            Box::new(C(stdlib::SortNatural)),
            Box::new(C(stdlib::Split)),
            Box::new(C(stdlib::Strip)),
            Box::new(C(stdlib::StripHtml)),
            Box::new(C(stdlib::StripNewlines)),
            Box::new(C(stdlib::Times)),
            Box::new(C(stdlib::Truncate)),
            Box::new(C(stdlib::TruncateWords)),
            Box::new(C(stdlib::Uniq)),
            Box::new(C(stdlib::Upcase)),
            Box::new(C(stdlib::UrlDecode)),
            Box::new(C(stdlib::UrlEncode)),
            Box::new(C(stdlib::Where)),
            Box::new(C(filters::JsonLiteral)),
            Box::new(C(filters::Raw)),
            Box::new(C(filters::EscapeJson)),
            Box::new(C(filters::EscapeUrl)),
        ];
        for f in filters {
            l.filters.register(f.reflection().name().to_owned(), f);
        }
        l
    })
}
