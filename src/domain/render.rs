//! What a queued webhook will send, computed when the event is queued: URL, custom headers
//! and body, each a liquid template over `event`, `item` and `parent_item`.

use serde_json::{Map, Value};

use super::{
    payload::ApiData,
    template::{Budget, Context, Limits, Template, TemplateError},
    webhook::WebhookSettings,
};

/// The rendered request of one queued webhook (signature headers are added per attempt).
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    pub url: String,
    pub headers: Map<String, Value>,
    pub body: String,
}

/// A webhook's templates, parsed once.
#[derive(Debug)]
pub struct WebhookTemplates {
    /// None: the default payload.
    payload: Option<Template>,
    url: Template,
    headers: Vec<(String, Template)>,
    /// Whether any template uses a variable (if not, rendering needs no variables).
    uses_variables: bool,
    limits: Limits,
}

/// A template that failed to parse, and which setting holds it (`payload`, `url`,
/// `customHeaders.<Name>`).
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    pub field: String,
    pub error: TemplateError,
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.error)
    }
}

impl FieldError {
    /// The validation error a form can place: the setting, and the line and column.
    pub fn into_error(self) -> crate::error::AppError {
        let message = self.to_string();
        crate::error::AppError::invalid_template(self.field, message, self.error.line, self.error.column)
    }
}

/// Whether bodies are JSON: yes unless a custom Content-Type header says otherwise.
pub fn body_is_json(headers: &Map<String, Value>) -> bool {
    headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("content-type"))
        .and_then(|(_, value)| value.as_str())
        .is_none_or(|value| value.to_ascii_lowercase().contains("json"))
}

fn check_url(url: &str) -> Result<(), String> {
    match url::Url::parse(url.trim()) {
        Ok(parsed) if matches!(parsed.scheme(), "http" | "https") && parsed.host().is_some() => Ok(()),
        _ => Err(format!("url: renders to `{url}`, which is not an http or https URL")),
    }
}

/// Whether a template source has anything to evaluate (`{{ … }}` or `{% … %}`).
pub fn is_dynamic(source: &str) -> bool {
    source.contains("{{") || source.contains("{%")
}

impl WebhookTemplates {
    pub fn parse(settings: &WebhookSettings, limits: Limits) -> Result<Self, FieldError> {
        let field = |field: &str| {
            let field = field.to_owned();
            move |error| FieldError { field: field.clone(), error }
        };
        let payload = match settings.payload.as_deref() {
            Some(source) if !settings.use_default_payload && !source.trim().is_empty() => {
                let context = if body_is_json(&settings.custom_headers) { Context::Json } else { Context::Text };
                Some(Template::parse(source, context, limits).map_err(field("payload"))?)
            }
            _ => None,
        };
        let url = Template::parse(&settings.url, Context::Url, limits).map_err(field("url"))?;
        if url.is_fixed() {
            // Checked once here rather than for every event.
            check_url(&settings.url).map_err(|message| FieldError {
                field: "url".into(),
                error: TemplateError { line: None, column: None, message: message.trim_start_matches("url: ").into() },
            })?;
        }
        let mut headers = Vec::with_capacity(settings.custom_headers.len());
        for (name, value) in &settings.custom_headers {
            let source = value.as_str().unwrap_or_default();
            let template =
                Template::parse(source, Context::Header, limits).map_err(field(&format!("customHeaders.{name}")))?;
            headers.push((name.clone(), template));
        }
        let uses_variables = payload.is_some()
            || is_dynamic(&settings.url)
            || settings.custom_headers.values().any(|v| v.as_str().is_some_and(is_dynamic));
        Ok(Self { payload, url, headers, uses_variables, limits })
    }

    pub fn uses_variables(&self) -> bool {
        self.uses_variables
    }

    /// Whether rendering is only copying (no template has anything to evaluate).
    pub fn is_fixed(&self) -> bool {
        self.payload.as_ref().is_none_or(Template::is_fixed)
            && self.url.is_fixed()
            && self.headers.iter().all(|(_, t)| t.is_fixed())
    }

    /// Renders the request for an event, its templates sharing one budget (time, iterations,
    /// bytes). `variables` is the event's `ApiData` as a liquid object (only needed when
    /// `uses_variables`); `default_body` is computed once per event.
    pub fn render(&self, variables: &liquid::Object, default_body: &str) -> Result<Rendered, String> {
        let mut budget = Budget::start(self.limits, Context::Text);
        let mut render = |template: &Template, field: &str| {
            let (result, spent) = template.render_in(variables, std::mem::take(&mut budget));
            budget = spent;
            result.map_err(|e| format!("{field}: {e}"))
        };
        let body = match &self.payload {
            Some(template) => render(template, "payload")?,
            None => default_body.to_owned(),
        };
        let url = render(&self.url, "url")?;
        if !self.url.is_fixed() {
            check_url(&url)?;
        }
        let mut headers = Map::with_capacity(self.headers.len());
        for (name, template) in &self.headers {
            let value = render(template, &format!("customHeaders.{name}"))?;
            headers.insert(name.clone(), Value::String(value));
        }
        Ok(Rendered { url, headers, body })
    }
}

/// The liquid variables of an event.
pub fn variables(data: &ApiData) -> liquid::Object {
    liquid::to_object(data).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::domain::webhook::WebhookEvent;

    fn settings(payload: &str, headers: Value) -> WebhookSettings {
        let mut s = WebhookSettings::defaults(
            "w".into(),
            0,
            "Ticket".into(),
            WebhookEvent::New,
            "https://h.example/{{ item.entity.name }}/{{ event }}".into(),
        );
        s.use_default_payload = false;
        s.payload = Some(payload.into());
        s.custom_headers = headers.as_object().cloned().unwrap_or_default();
        s
    }

    fn data() -> ApiData {
        ApiData {
            item: json!({"id": 3, "name": "A \"quoted\" title", "entity": {"name": "Paris & Co"}}),
            event: "new",
            parent_item: None,
            actor: None,
            changes: None,
        }
    }

    #[test]
    fn payload_url_and_headers_render_from_the_event() {
        let templates = WebhookTemplates::parse(
            &settings(
                r#"{"t": "{{ item.name }}", "id": {{ item.id }}}"#,
                json!({"Authorization": "Bearer {{ item.id }}"}),
            ),
            Limits::default(),
        )
        .expect("parses");
        let rendered = templates.render(&variables(&data()), "unused").expect("renders");
        assert_eq!(
            serde_json::from_str::<Value>(&rendered.body).expect("json"),
            json!({"t": "A \"quoted\" title", "id": 3})
        );
        assert_eq!(rendered.url, "https://h.example/Paris%20%26%20Co/new");
        assert_eq!(rendered.headers["Authorization"], "Bearer 3");
    }

    #[test]
    fn a_non_json_content_type_renders_text_as_is() {
        let templates = WebhookTemplates::parse(
            &settings("Title: {{ item.name }}", json!({"Content-Type": "text/plain"})),
            Limits::default(),
        )
        .expect("parses");
        assert_eq!(templates.render(&variables(&data()), "").expect("renders").body, "Title: A \"quoted\" title");
    }

    #[test]
    fn errors_name_the_setting() {
        let err = WebhookTemplates::parse(&settings("{{ item.name | nope }}", json!({})), Limits::default())
            .expect_err("bad");
        assert_eq!(err.field, "payload");
        let err =
            WebhookTemplates::parse(&settings("{}", json!({"X-A": "{% bad %}"})), Limits::default()).expect_err("bad");
        assert_eq!(err.field, "customHeaders.X-A");
        let mut s = settings("{}", json!({}));
        s.url = "https://{{ item.host | raw }}/x".into();
        let rendered = WebhookTemplates::parse(&s, Limits::default()).expect("parses").render(&variables(&data()), "");
        assert!(rendered.expect_err("no host").starts_with("url:"));
    }
}
