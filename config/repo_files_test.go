package config

import (
	"io"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// TestComposeUsesRealOptions keeps compose.yaml honest: every PARLEY_*
// variable it sets must be a configuration option, and together they must
// form a configuration that loads.
func TestComposeUsesRealOptions(t *testing.T) {
	data, err := os.ReadFile("../compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Services map[string]struct {
			Environment any `yaml:"environment"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatalf("compose.yaml: %v", err)
	}
	parley, ok := doc.Services["parley"]
	if !ok {
		t.Fatal("compose.yaml has no parley service")
	}
	env := map[string]string{}
	switch e := parley.Environment.(type) {
	case map[string]any:
		for k, v := range e {
			env[k] = toString(v)
		}
	case []any:
		for _, item := range e {
			k, v, _ := strings.Cut(toString(item), "=")
			env[k] = v
		}
	default:
		t.Fatalf("parley.environment has unexpected form %T", e)
	}
	known := EnvNames()
	// ${VAR:-default} is compose interpolation: take the default.
	interp := regexp.MustCompile(`\$\{[A-Z_]+:-([^}]*)\}`)
	seen := 0
	for k, v := range env {
		if !strings.HasPrefix(k, "PARLEY_") {
			continue
		}
		seen++
		if !slices.Contains(known, k) {
			t.Errorf("compose.yaml sets %s, which is not a configuration option", k)
		}
		env[k] = interp.ReplaceAllString(v, "$1")
	}
	if seen == 0 {
		t.Fatal("compose.yaml configures parley with no PARLEY_* variable")
	}
	if _, err := Load("serve", nil, func(k string) string { return env[k] }, io.Discard); err != nil {
		t.Errorf("compose.yaml's configuration does not load: %v", err)
	}
}

func toString(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case nil:
		return ""
	default:
		return strings.TrimSpace(strings.Trim(strings.TrimSpace(yamlString(v)), "\n"))
	}
}

func yamlString(v any) string {
	b, _ := yaml.Marshal(v)
	return string(b)
}

// TestOperationsDocListsEveryOption keeps the configuration reference in
// docs/operations.md complete.
func TestOperationsDocListsEveryOption(t *testing.T) {
	data, err := os.ReadFile("../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range Options() {
		row := "| `--" + o.Name + "` | `" + o.Env() + "` |"
		if o.EnvOnly {
			row = "| (environment only) | `" + o.Env() + "` |"
		}
		if !strings.Contains(string(data), row) {
			t.Errorf("docs/operations.md has no reference row for --%s (%s)", o.Name, o.Env())
		}
	}
}
