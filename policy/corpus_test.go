package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/caddy-nomos/nomos/policy/action"
	"gopkg.in/yaml.v3"
)

type decisionCorpus struct {
	Bundles map[string]string `yaml:"bundles"`
	Cases   []corpusCase      `yaml:"cases"`
}

type corpusCase struct {
	Name               string       `yaml:"name"`
	Bundles            []string     `yaml:"bundles"`
	Roles              []string     `yaml:"roles"`
	Action             corpusAction `yaml:"action"`
	NormalizationError bool         `yaml:"normalization_error"`
	Want               corpusWant   `yaml:"want"`
}

type corpusAction struct {
	ActionType  string         `yaml:"action_type"`
	Resource    string         `yaml:"resource"`
	Params      map[string]any `yaml:"params"`
	ParamsJSON  string         `yaml:"params_json"`
	LargeParams int            `yaml:"large_params"`
	Principal   string         `yaml:"principal"`
	Agent       string         `yaml:"agent"`
	Environment string         `yaml:"environment"`
	Raw         bool           `yaml:"raw"`
	RiskFlags   []string       `yaml:"risk_flags"`
}

type corpusWant struct {
	Decision       string   `yaml:"decision"`
	ReasonCode     string   `yaml:"reason_code"`
	MatchedRuleIDs []string `yaml:"matched_rule_ids"`
	Obligations    string   `yaml:"obligations"`
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func TestDecisionCorpus(t *testing.T) {
	var c decisionCorpus
	readYAML(t, "testdata/decisions.yaml", &c)
	seen := map[string]bool{}
	for _, tc := range c.Cases {
		t.Run(tc.Name, func(t *testing.T) {
			e := loadCorpusEngine(t, c.Bundles, tc)
			a, err := tc.Action.build()
			if tc.NormalizationError {
				if !errors.Is(err, action.ErrNormalization) {
					t.Fatalf("want a normalization error, got %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			d := e.Evaluate(a)
			seen[d.ReasonCode] = true
			checkDecision(t, d, tc.Want.Decision, tc.Want.ReasonCode, tc.Want.MatchedRuleIDs...)
			if tc.Want.Obligations != "" {
				if got, _ := json.Marshal(d.Obligations); string(got) != tc.Want.Obligations {
					t.Errorf("obligations %s, want %s", got, tc.Want.Obligations)
				}
			}
			if x := e.Explain(a); x.Decision != d.Decision || x.ReasonCode != d.ReasonCode {
				t.Errorf("explain says %s/%s", x.Decision, x.ReasonCode)
			}
		})
	}
	for _, code := range []string{ReasonDenyByDefault, ReasonDenyByRule, ReasonRequireApprovalByRule, ReasonAllowByRule, ReasonDenyByExecModelConflict, ReasonDenyByEvaluationError} {
		if !seen[code] {
			t.Errorf("the corpus never produces %s", code)
		}
	}
}

func loadCorpusEngine(t *testing.T, texts map[string]string, tc corpusCase) *Engine {
	t.Helper()
	var srcs []BundleSource
	for i, name := range tc.Bundles {
		text, ok := texts[name]
		if !ok {
			t.Fatalf("unknown bundle %q", name)
		}
		src := BundleSource{Path: name + ".yaml", Data: []byte(text)}
		if strings.HasPrefix(text, "{") {
			src.Path = name + ".json"
		}
		if i < len(tc.Roles) {
			src.Role = tc.Roles[i]
		}
		srcs = append(srcs, src)
	}
	e, err := Load(srcs, LoadOptions{Environment: "dev"})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func (ca corpusAction) params() (json.RawMessage, error) {
	switch {
	case ca.ParamsJSON != "":
		return json.RawMessage(ca.ParamsJSON), nil
	case ca.LargeParams > 0:
		return json.Marshal(map[string]string{"blob": strings.Repeat("x", ca.LargeParams)})
	case ca.Params != nil:
		return json.Marshal(ca.Params)
	}
	return json.RawMessage("{}"), nil
}

func (ca corpusAction) build() (*action.Action, error) {
	params, err := ca.params()
	if err != nil {
		return nil, err
	}
	id := action.Identity{Principal: or(ca.Principal, "alice"), Agent: or(ca.Agent, "coder"), Environment: or(ca.Environment, "dev")}
	if ca.Raw {
		return &action.Action{ActionType: ca.ActionType, Resource: ca.Resource, Params: params, RiskFlags: ca.RiskFlags,
			Principal: id.Principal, Agent: id.Agent, Environment: id.Environment}, nil
	}
	env := &action.Envelope{SchemaVersion: "v1", ActionID: "corpus", TraceID: "corpus", ActionType: ca.ActionType, Resource: ca.Resource, Params: params}
	return action.New(env, id)
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

type errorCase struct {
	Name        string        `yaml:"name"`
	Environment string        `yaml:"environment"`
	Bundles     []errorBundle `yaml:"bundles"`
	Error       string        `yaml:"error"`
}

type errorBundle struct {
	Path string `yaml:"path"`
	Role string `yaml:"role"`
	Data string `yaml:"data"`
}

func TestBundleErrorCorpus(t *testing.T) {
	var cases []errorCase
	readYAML(t, "testdata/bundle_errors.yaml", &cases)
	for _, tc := range cases {
		t.Run(tc.Name, func(t *testing.T) {
			var srcs []BundleSource
			for _, b := range tc.Bundles {
				srcs = append(srcs, BundleSource{Path: b.Path, Role: b.Role, Data: []byte(b.Data)})
			}
			_, err := Load(srcs, LoadOptions{Environment: tc.Environment})
			if err == nil || !errors.Is(err, ErrBundle) || !strings.Contains(err.Error(), tc.Error) {
				t.Fatalf("got %v, want ErrBundle containing %q", err, tc.Error)
			}
		})
	}
}
