package envoycheck

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
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
	// beside returns the text of the file called name that Envoy finds
	// beside the bootstrap: in the same directory, or the key of the
	// same ConfigMap (a ConfigMap's keys are files of one directory).
	beside func(name string) ([]byte, error)
}

// Problems checks the bootstrap like Problems, reading the files of
// path_config_source config discovery beside it, by their base names,
// unless opts.ReadDiscovered is set.
func (s Source) Problems(opts Options) []error {
	if opts.ReadDiscovered == nil && s.beside != nil {
		opts.ReadDiscovered = func(p string) ([]byte, error) { return s.beside(path.Base(p)) }
	}
	return Problems(s.YAML, opts)
}

// besideFile reads files of directory dir.
func besideFile(dir string) func(string) ([]byte, error) {
	return func(name string) ([]byte, error) {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%s: %w", name, ErrNoDiscoveredFile)
		}
		return data, err
	}
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
		sources, err := bootstraps(filepath.ToSlash(rel), filepath.Dir(path), data)
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

// Bootstraps returns the Envoy bootstraps in the YAML text of the file at
// path name: its documents with static_resources or dynamic_resources at
// the top, and those in the data of its Kubernetes ConfigMaps, named as Find
// names them.
func Bootstraps(name string, data []byte) ([]Source, error) {
	return bootstraps(name, filepath.Dir(name), data)
}

// bootstraps is Bootstraps for a file in directory dir.
func bootstraps(name, dir string, data []byte) ([]Source, error) {
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
			out = append(out, Source{Name: docName, YAML: []byte(doc), beside: besideFile(dir)})
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
			out = append(out, Source{Name: name, YAML: []byte(text), beside: besideKey(data)})
		}
	}
	return out, nil
}

// besideKey reads the keys of a ConfigMap's data.
func besideKey(data map[string]any) func(string) ([]byte, error) {
	return func(name string) ([]byte, error) {
		text, ok := data[name].(string)
		if !ok {
			return nil, fmt.Errorf("ConfigMap key %s: %w", name, ErrNoDiscoveredFile)
		}
		return []byte(text), nil
	}
}

func isBootstrap(top map[string]any) bool {
	_, static := top["static_resources"]
	_, dynamic := top["dynamic_resources"]
	return static || dynamic
}
