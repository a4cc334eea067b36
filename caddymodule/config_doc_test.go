package caddymodule

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strings"
	"testing"
)

// TestConfigFieldsStateTheirDefault: the config structs are the JSON
// schema and the reference, so every exported JSON field says its default.
func TestConfigFieldsStateTheirDefault(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	checked := 0
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		af, err := parser.ParseFile(fset, f, nil, parser.ParseComments)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(af, func(n ast.Node) bool {
			ts, ok := n.(*ast.TypeSpec)
			if !ok || !ts.Name.IsExported() {
				return true
			}
			st, ok := ts.Type.(*ast.StructType)
			if !ok {
				return true
			}
			for _, fld := range st.Fields.List {
				if fld.Tag == nil || !strings.Contains(fld.Tag.Value, `json:"`) || strings.Contains(fld.Tag.Value, `json:"-"`) {
					continue
				}
				checked++
				if !strings.Contains(strings.Join(strings.Fields(fld.Doc.Text()), " "), "Default: ") {
					t.Errorf("%s: %s.%s does not state its default (\"Default: X.\")", fset.Position(fld.Pos()), ts.Name.Name, fld.Names[0].Name)
				}
			}
			return true
		})
	}
	if checked < 50 {
		t.Fatalf("only %d config fields found: the check is not looking at the config", checked)
	}
}
