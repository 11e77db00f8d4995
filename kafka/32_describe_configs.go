package kafka

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/heraldhq/herald/broker"
)

// describeConfigs describes topics (every config with its effective value
// and source) and the broker (a few static entries).
func (c *conn) describeConfigs(req *request, r *kmsg.DescribeConfigsRequest) (kmsg.Response, error) {
	resp := r.ResponseKind().(*kmsg.DescribeConfigsResponse)
	for _, res := range r.Resources {
		rr := kmsg.NewDescribeConfigsResponseResource()
		rr.ResourceType, rr.ResourceName = res.ResourceType, res.ResourceName
		var entries []broker.ConfigEntry
		var err error
		switch res.ResourceType {
		case kmsg.ConfigResourceTypeTopic:
			entries, err = c.s.b.DescribeConfigs(res.ResourceName)
		case kmsg.ConfigResourceTypeBroker:
			entries = c.s.brokerConfigs()
		default:
			err = kerr.InvalidRequest
		}
		rr.ErrorCode, rr.ErrorMessage = errCode(err), errMessage(err)
		want := map[string]bool{}
		for _, n := range res.ConfigNames {
			want[n] = true
		}
		for _, e := range entries {
			if res.ConfigNames != nil && !want[e.Name] {
				continue
			}
			rc := kmsg.NewDescribeConfigsResponseResourceConfig()
			rc.Name, rc.Value, rc.ReadOnly, rc.IsSensitive = e.Name, &e.Value, e.ReadOnly, e.Sensitive
			rc.Source = kmsg.ConfigSource(e.Source)
			rc.IsDefault = e.Source == broker.SourceDefault
			rc.ConfigType = configType(e.Name)
			if r.IncludeSynonyms {
				syn := kmsg.NewDescribeConfigsResponseResourceConfigConfigSynonym()
				syn.Name, syn.Value, syn.Source = e.Name, &e.Value, rc.Source
				rc.ConfigSynonyms = append(rc.ConfigSynonyms, syn)
			}
			rr.Configs = append(rr.Configs, rc)
		}
		resp.Resources = append(resp.Resources, rr)
	}
	return resp, nil
}
