package httpjson

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

type req struct {
	Name  string `json:"name"`
	Count int    `json:"count"`
}

func TestDecode(t *testing.T) {
	for _, tc := range []struct {
		body, code, field, msg string
	}{
		{`{"name":"a","count":1}`, "", "", ""},
		{``, CodeInvalidArgument, "", "empty"},
		{`{"name":`, CodeInvalidArgument, "", "truncated"},
		{`{"name" 1}`, CodeInvalidArgument, "", "malformed JSON at byte"},
		{`{"count":"x"}`, CodeInvalidArgument, "count", "want a JSON int"},
		{`{"other":1}`, CodeInvalidArgument, "other", "unknown field"},
		{`{"name":"a"} {}`, CodeInvalidArgument, "", "after the JSON value"},
		{`{"name":"` + strings.Repeat("x", 100) + `"}`, CodePayloadTooLarge, "", "limit of 64 bytes"},
	} {
		r := httptest.NewRequest("POST", "/", strings.NewReader(tc.body))
		var v req
		err := Decode(httptest.NewRecorder(), r, 64, &v)
		if tc.code == "" {
			if err != nil || v.Name != "a" || v.Count != 1 {
				t.Errorf("%q: %v %+v", tc.body, err, v)
			}
			continue
		}
		var e *Error
		if !errors.As(err, &e) || e.Code != tc.code || e.Field != tc.field || !strings.Contains(e.Message, tc.msg) {
			t.Errorf("%q: got %#v, want code %s field %q message with %q", tc.body, err, tc.code, tc.field, tc.msg)
		}
	}
}

func TestWriteError(t *testing.T) {
	for _, tc := range []struct {
		err    error
		status int
		code   string
	}{
		{Invalid("ackDeadlineSeconds", "want 10 to 600, got 9"), 400, CodeInvalidArgument},
		{fmt.Errorf("wrapped: %w", Errorf(CodeNotFound, "", "no such topic")), 404, CodeNotFound},
		{errors.New("disk on fire"), 500, CodeInternal},
	} {
		w := httptest.NewRecorder()
		WriteError(w, tc.err)
		var body struct{ Error Error }
		if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
			t.Fatal(err)
		}
		if w.Code != tc.status || body.Error.Code != tc.code || w.Header().Get("Content-Type") != "application/json" {
			t.Errorf("%v: status %d body %s", tc.err, w.Code, w.Body)
		}
	}
	if Status(CodeAlreadyExists) != http.StatusConflict {
		t.Error("ALREADY_EXISTS is not 409")
	}
}
