package cep

import _ "embed"

// OpenAPI is the OpenAPI 3 fragment (openapi.json: "paths" and
// "components") documenting the routes Routes mounts. herald serve merges
// it into the API's document with httpapi's (*API).AddOpenAPI.
//
//go:embed openapi.json
var OpenAPI []byte
