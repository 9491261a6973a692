package envoycheck

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"sigs.k8s.io/yaml"
)

// Source is one Envoy bootstrap found in a file tree.
type Source struct {
	// Name says where the bootstrap is: a slash-separated path relative to
	// the root, plus "#ConfigMap/<name>/<key>" when it is embedded in a
	// Kubernetes ConfigMap, and "#<n>" for the n-th document (from 1) of a
	// multi-document file.
	Name string
	// YAML is the bootstrap's text.
	YAML []byte
}

// documentSeparator splits a multi-document YAML stream.
var documentSeparator = regexp.MustCompile(`(?m)^---[ \t]*(#.*)?$`)

// Find walks root and returns every Envoy bootstrap in its YAML files
// (*.yaml, *.yml): documents with static_resources or dynamic_resources at the
// top, also inside the data of Kubernetes ConfigMaps. Hidden directories are
// skipped. A YAML file whose name mentions "envoy" but holds no bootstrap is
// an error, so a bootstrap the search would miss does not go unchecked.
func Find(root string) ([]Source, error) {
	var found []Source
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path != root && strings.HasPrefix(d.Name(), ".") {
				return filepath.SkipDir
			}
			return nil
		}
		if ext := filepath.Ext(path); ext != ".yaml" && ext != ".yml" {
			return nil
		}
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		sources, err := Bootstraps(filepath.ToSlash(rel), data)
		if err != nil {
			return err
		}
		if len(sources) == 0 && strings.Contains(strings.ToLower(d.Name()), "envoy") {
			return fmt.Errorf("envoycheck: %s: the name mentions envoy but no Envoy bootstrap was found in it", rel)
		}
		found = append(found, sources...)
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.Slice(found, func(i, j int) bool { return found[i].Name < found[j].Name })
	return found, nil
}

// Bootstraps returns the Envoy bootstraps in the YAML text of a file called
// name: its documents with static_resources or dynamic_resources at the top,
// and those in the data of its Kubernetes ConfigMaps, named as Find names
// them.
func Bootstraps(name string, data []byte) ([]Source, error) {
	docs := documentSeparator.Split(string(data), -1)
	var out []Source
	for i, doc := range docs {
		docName := name
		if len(docs) > 1 {
			docName = fmt.Sprintf("%s#%d", name, i+1)
		}
		var top map[string]any
		if err := yaml.Unmarshal([]byte(doc), &top); err != nil {
			return nil, fmt.Errorf("envoycheck: %s: %w", docName, err)
		}
		switch {
		case isBootstrap(top):
			out = append(out, Source{Name: docName, YAML: []byte(doc)})
		case top["kind"] == "ConfigMap":
			embedded, err := bootstrapsInConfigMap(name, top)
			if err != nil {
				return nil, err
			}
			out = append(out, embedded...)
		}
	}
	return out, nil
}

// bootstrapsInConfigMap returns the bootstraps held in a ConfigMap's data.
func bootstrapsInConfigMap(file string, cm map[string]any) ([]Source, error) {
	metadata, _ := cm["metadata"].(map[string]any)
	data, _ := cm["data"].(map[string]any)
	var out []Source
	for _, key := range sortedKeys(data) {
		text, ok := data[key].(string)
		if !ok || !(strings.HasSuffix(key, ".yaml") || strings.HasSuffix(key, ".yml")) {
			continue
		}
		name := fmt.Sprintf("%s#ConfigMap/%v/%s", file, metadata["name"], key)
		var top map[string]any
		if err := yaml.Unmarshal([]byte(text), &top); err != nil {
			return nil, fmt.Errorf("envoycheck: %s: %w", name, err)
		}
		if isBootstrap(top) {
			out = append(out, Source{Name: name, YAML: []byte(text)})
		}
	}
	return out, nil
}

func isBootstrap(top map[string]any) bool {
	_, static := top["static_resources"]
	_, dynamic := top["dynamic_resources"]
	return static || dynamic
}
