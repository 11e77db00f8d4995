package sql

import _ "embed"

// OpenAPI is the OpenAPI 3 fragment (openapi.json: "paths" and
// "components") documenting the routes Routes mounts. herald serve merges
// it into the API's document with httpapi's (*API).AddOpenAPI; a test there
// checks that it matches the routes one for one.
//
//go:embed openapi.json
var OpenAPI []byte
