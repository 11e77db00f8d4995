package kafka

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// deleteTopics deletes by name, or by topic id from v6.
func (c *conn) deleteTopics(req *request, r *kmsg.DeleteTopicsRequest) (kmsg.Response, error) {
	resp := r.ResponseKind().(*kmsg.DeleteTopicsResponse)
	topics := r.Topics
	if r.Version < 6 {
		topics = nil
		for _, n := range r.TopicNames {
			topics = append(topics, kmsg.DeleteTopicsRequestTopic{Topic: &n})
		}
	}
	for _, t := range topics {
		rt := kmsg.NewDeleteTopicsResponseTopic()
		rt.Topic, rt.TopicID = t.Topic, t.TopicID
		var err error
		name := str(t.Topic)
		if t.Topic == nil {
			info, ierr := c.s.b.TopicByID(t.TopicID)
			if ierr != nil {
				err = kerr.UnknownTopicID
			}
			name = info.Name
			rt.Topic = &info.Name
		} else if info, ierr := c.s.b.Topic(name); ierr == nil {
			rt.TopicID = info.ID
		}
		if err == nil {
			err = c.s.b.DeleteTopic(c.ctx, name)
		}
		rt.ErrorCode, rt.ErrorMessage = errCode(err), errMessage(err)
		resp.Topics = append(resp.Topics, rt)
	}
	return resp, nil
}
