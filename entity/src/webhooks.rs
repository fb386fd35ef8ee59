use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "webhooks")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub name: String,
    pub comment: Option<String>,
    pub is_active: bool,
    pub category_id: Option<i64>,
    pub entity_id: i64,
    pub is_recursive: bool,
    pub itemtype: String,
    /// `new`, `update`, `delete`, `restore` or `purge`.
    pub event: String,
    /// GLPI's "number of retries": attempts = sent_try + 1.
    pub sent_try: i32,
    pub url: String,
    pub http_method: String,
    pub save_response_body: bool,
    pub log_in_item_history: bool,
    /// The signing secret, sealed with the server key (never stored in clear).
    pub secret_encrypted: String,
    /// `GLPI`, `STANDARD_WEBHOOKS` or `BOTH`.
    pub signature_scheme: String,
    /// Seconds; 0 disables.
    pub expiration: i32,
    pub use_cra_challenge: bool,
    pub use_oauth: bool,
    pub oauth_url: Option<String>,
    pub client_id: Option<String>,
    /// The OAuth client secret, sealed with the server key.
    pub client_secret_encrypted: Option<String>,
    pub use_default_payload: bool,
    pub payload: Option<String>,
    /// JSON object `{"Header-Name": "template"}`.
    pub custom_headers: Json,
    /// Inline filter criteria (a JSON array), when the filter is not a saved search.
    pub filter_criteria: Option<Json>,
    /// The saved search used as filter.
    pub saved_search_id: Option<i64>,
    /// Most sends started in any one second (None: no limit).
    pub max_per_second: Option<i32>,
    /// The secret a rotation replaced, sealed like the current one: attempts are also signed
    /// with it until `previous_secret_expires_at`.
    pub previous_secret_encrypted: Option<String>,
    pub previous_secret_expires_at: Option<DateTimeUtc>,
    /// The deliveries of one item are sent one at a time, in event order.
    pub ordered: bool,
    /// How long `update` rows wait before their first send; a newer update of the same item
    /// replaces a waiting one. 0: no wait.
    pub coalesce_seconds: i32,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
