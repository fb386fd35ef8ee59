// GraphQL over HTTP with the session's token. Errors keep the API's `extensions` (code, field,
// line, column) so that a form can place them.

import { token } from './session.js';

/** One refusal of the API (or of the network: code `NETWORK`). */
export class ApiError extends Error {
  constructor(message, { code = 'INTERNAL', field = null, line = null, column = null, errors = [] } = {}) {
    super(message);
    this.code = code;
    this.field = field;
    this.line = line;
    this.column = column;
    this.errors = errors;
  }

  /** The message with a template's place, as a form shows it. */
  describe() {
    if (this.line && !/\bline \d+/i.test(this.message)) return `Line ${this.line}, column ${this.column ?? 1}: ${this.message}`;
    return this.message;
  }
}

function fromGraphQL(errors) {
  const first = errors[0] || {};
  const ext = first.extensions || {};
  return new ApiError(first.message || 'The request was refused', {
    code: ext.code || 'INTERNAL',
    field: ext.field ?? null,
    line: ext.line ?? null,
    column: ext.column ?? null,
    errors,
  });
}

/** Tells the page that the server refused the token (it signs the user out). */
function refused(error) {
  window.dispatchEvent(new CustomEvent('hookline:unauthenticated', { detail: error.message }));
}

/** Tells the page whether the server could be reached. */
function reachable(ok) {
  window.dispatchEvent(new CustomEvent('hookline:reachable', { detail: ok }));
}

/**
 * Runs a query or mutation and returns its `data`; throws an ApiError for the first error.
 * `options.token` overrides the session's (the sign-in check).
 */
export async function gql(query, variables = {}, options = {}) {
  const bearer = options.token ?? token();
  let response;
  try {
    response = await fetch('graphql', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${bearer || ''}` },
      body: JSON.stringify({ query, variables }),
      cache: 'no-store',
      credentials: 'omit',
    });
  } catch {
    reachable(false);
    throw new ApiError('The server cannot be reached; check the connection and try again.', { code: 'NETWORK' });
  }
  reachable(true);
  let body;
  try {
    body = await response.json();
  } catch {
    throw new ApiError(`The server answered ${response.status} without a GraphQL response.`, { code: 'INTERNAL' });
  }
  if (body.errors && body.errors.length) {
    const error = fromGraphQL(body.errors);
    if (error.code === 'UNAUTHENTICATED' && !options.token) refused(error);
    throw error;
  }
  return body.data;
}

/** The edges of a connection as a list of nodes. */
export function nodes(connection) {
  return (connection?.edges || []).map((edge) => edge.node);
}
