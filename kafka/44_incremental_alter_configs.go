package kafka

import (
	"fmt"
	"slices"
	"strings"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/heraldhq/herald/broker"
)

// incrementalAlterConfigs changes topic configs: SET, DELETE (back to the
// default), and APPEND / SUBTRACT for list configs. Broker configs are
// static and refused.
func (c *conn) incrementalAlterConfigs(req *request, r *kmsg.IncrementalAlterConfigsRequest) (kmsg.Response, error) {
	resp := r.ResponseKind().(*kmsg.IncrementalAlterConfigsResponse)
	for _, res := range r.Resources {
		rr := kmsg.NewIncrementalAlterConfigsResponseResource()
		rr.ResourceType, rr.ResourceName = res.ResourceType, res.ResourceName
		err := c.alterTopicConfigs(res, r.ValidateOnly)
		rr.ErrorCode, rr.ErrorMessage = errCode(err), errMessage(err)
		resp.Resources = append(resp.Resources, rr)
	}
	return resp, nil
}

func (c *conn) alterTopicConfigs(res kmsg.IncrementalAlterConfigsRequestResource, validateOnly bool) error {
	switch res.ResourceType {
	case kmsg.ConfigResourceTypeTopic:
	case kmsg.ConfigResourceTypeBroker:
		return fmt.Errorf("%w: broker configs are static", kerr.InvalidRequest)
	default:
		return fmt.Errorf("%w: resource type %v", kerr.InvalidRequest, res.ResourceType)
	}
	var current map[string]string
	set := map[string]*string{}
	for _, cf := range res.Configs {
		if _, dup := set[cf.Name]; dup {
			return fmt.Errorf("%w: config %s is named more than once", kerr.InvalidRequest, cf.Name)
		}
		switch cf.Op {
		case kmsg.IncrementalAlterConfigOpSet:
			if cf.Value == nil {
				return fmt.Errorf("%w: SET %s without a value", broker.ErrInvalidConfig, cf.Name)
			}
			set[cf.Name] = cf.Value
		case kmsg.IncrementalAlterConfigOpDelete:
			set[cf.Name] = nil
		case kmsg.IncrementalAlterConfigOpAppend, kmsg.IncrementalAlterConfigOpSubtract:
			if configType(cf.Name) != kmsg.ConfigTypeList {
				return fmt.Errorf("%w: %s is not a list", broker.ErrInvalidConfig, cf.Name)
			}
			if current == nil {
				entries, err := c.s.b.DescribeConfigs(res.ResourceName)
				if err != nil {
					return err
				}
				current = map[string]string{}
				for _, e := range entries {
					current[e.Name] = e.Value
				}
			}
			var items []string
			for _, it := range strings.Split(current[cf.Name], ",") {
				if it = strings.TrimSpace(it); it != "" {
					items = append(items, it)
				}
			}
			for _, it := range strings.Split(str(cf.Value), ",") {
				it = strings.TrimSpace(it)
				if it == "" {
					continue
				}
				i := slices.Index(items, it)
				switch {
				case cf.Op == kmsg.IncrementalAlterConfigOpAppend && i < 0:
					items = append(items, it)
				case cf.Op == kmsg.IncrementalAlterConfigOpSubtract && i >= 0:
					items = slices.Delete(items, i, i+1)
				}
			}
			v := strings.Join(items, ",")
			set[cf.Name] = &v
		default:
			return fmt.Errorf("%w: unknown operation %d", kerr.InvalidRequest, cf.Op)
		}
	}
	return c.s.b.AlterConfigs(c.ctx, res.ResourceName, set, validateOnly)
}
