// Starts GraphiQL (vendored under assets/vendor/) on the page that `GET /graphql` serves.
// Queries and mutations are POSTed to the page's own address; subscriptions go over a
// WebSocket to the same address (graphql-transport-ws, with the graphql-ws client that the
// GraphiQL bundle contains). The Headers tab is sent with every request and as the
// `connection_init` payload of the WebSocket, so `{"Authorization": "Bearer …"}` there
// authenticates both: the page opens with that tab shown and the header to complete (the
// token of `data/admin.token` on a first start). The token is not stored by the page. `?query=`, `?variables=` and `?operationName=` open the editor with
// that operation, and follow the edits so that the address can be shared.
(function () {
  'use strict';

  var endpoint = window.location.origin + window.location.pathname;
  var parameters = new URLSearchParams(window.location.search);

  var send = GraphiQL.createFetcher({
    url: endpoint,
    subscriptionUrl: endpoint.replace(/^http/, 'ws'),
    // hookline answers plain JSON; no multipart (incremental delivery) requests.
    enableIncrementalDelivery: false,
    headers: { accept: 'application/json' },
  });

  // Until the Headers tab holds a token, say so instead of sending requests that hookline
  // would refuse (401).
  var bearer = /^Bearer\s+[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;
  function fetcher(params, options) {
    var headers = (options && options.headers) || {};
    var authorization = String(headers.Authorization || headers.authorization || '').trim();
    if (!bearer.test(authorization)) {
      return Promise.resolve({
        errors: [{
          message: 'Paste your API token in the Headers tab: {"Authorization": "Bearer <token>"} ' +
            '(a first start writes one to data/admin.token)',
          extensions: { code: 'UNAUTHENTICATED' },
        }],
      });
    }
    return send(params, options);
  }

  function follow(name) {
    return function (value) {
      if (value) {
        parameters.set(name, value);
      } else {
        parameters.delete(name);
      }
      var search = parameters.toString();
      window.history.replaceState(null, '', search ? '?' + search : window.location.pathname);
    };
  }

  function given(name) {
    var value = parameters.get(name);
    return value === null ? undefined : value;
  }

  var props = {
    fetcher: fetcher,
    query: given('query'),
    variables: given('variables'),
    operationName: given('operationName'),
    onEditQuery: follow('query'),
    onEditVariables: follow('variables'),
    onEditOperationName: follow('operationName'),
    defaultHeaders: '{\n  "Authorization": "Bearer <paste your API token here>"\n}',
    defaultEditorToolsVisibility: 'headers',
    shouldPersistHeaders: false,
  };
  // In place of GraphiQL's logo, which links to github.com.
  var logo = React.createElement(GraphiQL.Logo, null, 'hookline');
  ReactDOM.createRoot(document.getElementById('graphiql')).render(React.createElement(GraphiQL, props, logo));
})();
