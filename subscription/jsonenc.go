package subscription

import (
	"encoding/base64"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"
)

// appendPullResponse writes {"receivedMessages":[...]} as encoding/json
// would for []Received, without reflection: pull responses are the hot
// path of the HTTP API.
func appendPullResponse(b []byte, rs []Received) []byte {
	b = append(b, `{"receivedMessages":[`...)
	for i := range rs {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendReceived(b, &rs[i])
	}
	return append(b, "]}\n"...)
}

// pullResponseSize is about what appendPullResponse writes for rs.
func pullResponseSize(rs []Received) int {
	n := 32
	for i := range rs {
		r := &rs[i]
		n += base64.StdEncoding.EncodedLen(len(r.Message.Data)) + len(r.AckID) + len(r.Message.MessageID) + len(r.Message.OrderingKey) + 128
		for k, v := range r.Message.Attributes {
			n += len(k) + len(v) + 8
		}
	}
	return n
}

func appendReceived(b []byte, r *Received) []byte {
	b = append(b, `{"ackId":`...)
	b = appendJSONString(b, r.AckID)
	b = append(b, `,"message":{"data":"`...)
	b = base64.StdEncoding.AppendEncode(b, r.Message.Data)
	b = append(b, '"')
	if len(r.Message.Attributes) > 0 {
		b = append(b, `,"attributes":{`...)
		keys := make([]string, 0, len(r.Message.Attributes))
		for k := range r.Message.Attributes {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for i, k := range keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, k)
			b = append(b, ':')
			b = appendJSONString(b, r.Message.Attributes[k])
		}
		b = append(b, '}')
	}
	b = append(b, `,"messageId":`...)
	b = appendJSONString(b, r.Message.MessageID)
	b = append(b, `,"publishTime":"`...)
	b = r.Message.PublishTime.AppendFormat(b, time.RFC3339Nano)
	b = append(b, '"')
	if r.Message.OrderingKey != "" {
		b = append(b, `,"orderingKey":`...)
		b = appendJSONString(b, r.Message.OrderingKey)
	}
	b = append(b, `},"deliveryAttempt":`...)
	b = strconv.AppendInt(b, int64(r.DeliveryAttempt), 10)
	return append(b, '}')
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string, escaped as encoding/json
// does without HTML escaping: invalid UTF-8 becomes U+FFFD.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
