package jsonrpc

import (
	"encoding/json"
	"testing"
)

func TestMessageKinds(t *testing.T) {
	cases := []struct {
		raw                  string
		req, notif, response bool
	}{
		{`{"jsonrpc":"2.0","id":1,"method":"ping"}`, true, false, false},
		{`{"jsonrpc":"2.0","id":null,"method":"ping"}`, false, true, false},
		{`{"jsonrpc":"2.0","method":"notifications/initialized"}`, false, true, false},
		{`{"jsonrpc":"2.0","id":"a","result":{}}`, false, false, true},
	}
	for _, c := range cases {
		var m Message
		if err := json.Unmarshal([]byte(c.raw), &m); err != nil {
			t.Fatal(err)
		}
		if m.IsRequest() != c.req || m.IsNotification() != c.notif || m.IsResponse() != c.response {
			t.Errorf("%s: request=%v notification=%v response=%v", c.raw, m.IsRequest(), m.IsNotification(), m.IsResponse())
		}
	}
}

func TestValidID(t *testing.T) {
	for id, want := range map[string]bool{`"x"`: true, `7`: true, `-1`: true, `null`: false, `{}`: false, `true`: false, ``: false} {
		if got := ValidID(json.RawMessage(id)); got != want {
			t.Errorf("ValidID(%s) = %v", id, got)
		}
	}
}

func TestErrorWithoutIDIsNull(t *testing.T) {
	got := string(ErrorResponse(nil, CodeParseError, "bad", nil))
	if want := `{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"bad"}}`; got != want {
		t.Fatalf("got %s, want %s", got, want)
	}
}
