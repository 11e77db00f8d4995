package kafka

import (
	"sort"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func (c *conn) apiVersions(req *request, r *kmsg.ApiVersionsRequest) (kmsg.Response, error) {
	resp := r.ResponseKind().(*kmsg.ApiVersionsResponse)
	resp.ApiKeys = c.supportedKeys()
	return resp, nil
}

// apiVersionsUnsupported answers an ApiVersions version outside the range:
// UNSUPPORTED_VERSION and the supported keys, in a v0 response, which every
// client can read, so it can retry with a version we have.
func (c *conn) apiVersionsUnsupported(req *request) kmsg.Response {
	req.version = 0
	resp := kmsg.NewPtrApiVersionsResponse()
	resp.ErrorCode = kerr.UnsupportedVersion.Code
	resp.ApiKeys = c.supportedKeys()
	return resp
}

// supportedKeys lists the APIs: all of them, except SASL's on a listener
// without authentication.
func (c *conn) supportedKeys() []kmsg.ApiVersionsResponseApiKey {
	keys := make([]kmsg.ApiVersionsResponseApiKey, 0, len(apis))
	for k, a := range apis {
		if saslKey(k) && c.s.cfg.Auth == nil {
			continue
		}
		ak := kmsg.NewApiVersionsResponseApiKey()
		ak.ApiKey, ak.MinVersion, ak.MaxVersion = k, a.min, a.max
		keys = append(keys, ak)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].ApiKey < keys[j].ApiKey })
	return keys
}
