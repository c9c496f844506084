package metrics_test

import (
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"

	"github.com/parley-meet/parley/metrics"
	"github.com/parley-meet/parley/signaling"
	"github.com/parley-meet/parley/turn"
)

// fullRegistry has every source, so that every family exists.
func fullRegistry() *metrics.Registry {
	reg := metrics.New("test")
	reg.AddMedia(&fakeMedia{})
	reg.AddHub(&fakeHub{stats: signaling.Stats{}})
	reg.AddTURN(&fakeTURN{st: turn.Stats{}})
	reg.AddRecordings(&fakeRecorder{})
	return reg
}

type panel struct {
	Type       string          `json:"type"`
	Title      string          `json:"title"`
	ID         int             `json:"id"`
	Datasource json.RawMessage `json:"datasource"`
	GridPos    *struct{ H, W, X, Y int }
	Targets    []struct {
		Expr       string          `json:"expr"`
		Datasource json.RawMessage `json:"datasource"`
	} `json:"targets"`
	Panels []panel `json:"panels"` // of a collapsed row
}

// The Grafana dashboard is valid JSON, reads Prometheus through a data
// source variable, references only metrics that exist, and has a panel
// for every parley_ family.
func TestGrafanaDashboard(t *testing.T) {
	data, err := os.ReadFile("../deploy/grafana/parley.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Title      string  `json:"title"`
		UID        string  `json:"uid"`
		Panels     []panel `json:"panels"`
		Templating struct {
			List []struct {
				Name  string `json:"name"`
				Type  string `json:"type"`
				Query any    `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatalf("deploy/grafana/parley.json: %v", err)
	}
	if dash.Title == "" || dash.UID == "" {
		t.Error("the dashboard has no title or uid")
	}
	hasDS := false
	for _, v := range dash.Templating.List {
		if v.Name == "datasource" && v.Type == "datasource" && v.Query == "prometheus" {
			hasDS = true
		}
	}
	if !hasDS {
		t.Error(`no "datasource" variable of type datasource for prometheus`)
	}

	fams := families(t, fullRegistry().Gatherer())
	exists := func(name string) bool {
		if fams[name] != nil {
			return true
		}
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if base, ok := strings.CutSuffix(name, suffix); ok && fams[base].GetType() == dto.MetricType_HISTOGRAM {
				return true
			}
		}
		return false
	}
	metricName := regexp.MustCompile(`\b(?:parley|go|process)_[a-z0-9_]+\b`)
	wantDS := `{"type":"prometheus","uid":"${datasource}"}`
	referenced := map[string]bool{}
	ids := map[int]bool{}
	var all []panel
	for _, p := range dash.Panels {
		all = append(all, p)
		all = append(all, p.Panels...)
	}
	for _, p := range all {
		if ids[p.ID] {
			t.Errorf("panel id %d is used twice", p.ID)
		}
		ids[p.ID] = true
		if p.GridPos == nil {
			t.Errorf("panel %q has no gridPos", p.Title)
		}
		if p.Type == "row" {
			continue
		}
		if compact(t, p.Datasource) != wantDS {
			t.Errorf("panel %q reads %s, want the datasource variable", p.Title, p.Datasource)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			if compact(t, tg.Datasource) != wantDS {
				t.Errorf("a query of panel %q reads %s", p.Title, tg.Datasource)
			}
			names := metricName.FindAllString(tg.Expr, -1)
			if len(names) == 0 {
				t.Errorf("panel %q: query %q names no metric", p.Title, tg.Expr)
			}
			for _, n := range names {
				if !exists(n) {
					t.Errorf("panel %q: %s is not a metric of the registry", p.Title, n)
				}
				referenced[strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(n, "_bucket"), "_sum"), "_count")] = true
			}
		}
	}
	var missing []string
	for name := range fams {
		if strings.HasPrefix(name, "parley_") && !referenced[name] {
			missing = append(missing, name)
		}
	}
	slices.Sort(missing)
	if len(missing) > 0 {
		t.Errorf("no panel shows %v", missing)
	}
}

func compact(t *testing.T, raw json.RawMessage) string {
	t.Helper()
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return string(raw)
	}
	b, _ := json.Marshal(v)
	return string(b)
}
