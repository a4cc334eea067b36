package executor

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

const devNull = "/dev/null"

// filePatch is one file's part of a unified diff. An empty oldPath creates
// the file, an empty newPath deletes it.
type filePatch struct {
	oldPath, newPath string
	hunks            []hunk
}

// target is the workspace path the file patch changes.
func (fp *filePatch) target() string {
	if fp.newPath == "" {
		return fp.oldPath
	}
	return fp.newPath
}

// hunk holds the lines a hunk expects and the lines it puts in their place,
// each with its "\n" unless a "\ No newline at end of file" marker removed it.
type hunk struct {
	oldStart, oldLines, newStart, newLines int
	old, new                               []string
}

var hunkHeader = regexp.MustCompile(`^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@`)

// unsupportedHeaders are git extended headers describing changes that a
// content patch cannot express; they are refused rather than ignored.
var unsupportedHeaders = []string{
	"rename from ", "rename to ", "copy from ", "copy to ", "old mode ", "new mode ",
	"GIT binary patch", "Binary files ",
}

// PatchPaths returns the workspace paths a unified diff changes, sorted,
// as the diff names them ("a/" and "b/" prefixes removed). The caller checks
// each as its own fs.write on file://workspace/<path> before executing.
func PatchPaths(patch string) ([]string, error) {
	files, err := parsePatch(patch)
	if err != nil {
		return nil, err
	}
	paths := make([]string, len(files))
	for i := range files {
		paths[i] = files[i].target()
	}
	slices.Sort(paths)
	return paths, nil
}

type patchParser struct {
	lines []string
	i     int
}

// parsePatch parses a unified diff as coding agents send it: optional git
// headers, "---"/"+++" file headers with or without a/ b/ prefixes,
// /dev/null for creation and deletion, any number of files and hunks.
func parsePatch(text string) ([]filePatch, error) {
	p := &patchParser{lines: strings.Split(strings.TrimSuffix(text, "\n"), "\n")}
	var files []filePatch
	for p.i < len(p.lines) {
		line := p.lines[p.i]
		if h, bad := unsupportedHeader(line); bad {
			return nil, fmt.Errorf("patch: %q changes are not supported", strings.TrimSpace(h))
		}
		if !strings.HasPrefix(line, "--- ") {
			p.i++ // "diff --git", "index", "new file mode", commentary
			continue
		}
		fp, err := p.file()
		if err != nil {
			return nil, err
		}
		files = append(files, fp)
	}
	return files, checkFiles(files)
}

func unsupportedHeader(line string) (string, bool) {
	for _, h := range unsupportedHeaders {
		if strings.HasPrefix(line, h) {
			return h, true
		}
	}
	return "", false
}

func checkFiles(files []filePatch) error {
	if len(files) == 0 {
		return errors.New("patch: no file changes found")
	}
	seen := map[string]bool{}
	for _, fp := range files {
		if fp.oldPath != "" && fp.newPath != "" && fp.oldPath != fp.newPath {
			return fmt.Errorf("patch: renaming %s is not supported", fp.oldPath)
		}
		if seen[fp.target()] {
			return fmt.Errorf("patch: %s is changed twice", fp.target())
		}
		seen[fp.target()] = true
	}
	return nil
}

// file parses "--- old", "+++ new" and the hunks that follow.
func (p *patchParser) file() (filePatch, error) {
	oldPath := headerPath(p.lines[p.i][4:])
	p.i++
	if p.i >= len(p.lines) || !strings.HasPrefix(p.lines[p.i], "+++ ") {
		return filePatch{}, errors.New("patch: \"---\" header without \"+++\"")
	}
	newPath := headerPath(p.lines[p.i][4:])
	p.i++
	oldPath, newPath = stripPrefixes(oldPath, newPath)
	if oldPath == "" && newPath == "" {
		return filePatch{}, errors.New("patch: both sides are /dev/null")
	}
	fp := filePatch{oldPath: oldPath, newPath: newPath}
	for p.i < len(p.lines) && strings.HasPrefix(p.lines[p.i], "@@") {
		h, err := p.hunk()
		if err != nil {
			return filePatch{}, fmt.Errorf("patch: %s: %w", fp.target(), err)
		}
		fp.hunks = append(fp.hunks, h)
	}
	if len(fp.hunks) == 0 {
		return filePatch{}, fmt.Errorf("patch: %s has no hunks", fp.target())
	}
	return fp, nil
}

// headerPath takes the path of a file header: without a trailing tab and
// timestamp, unquoted if git quoted it, "" for /dev/null.
func headerPath(s string) string {
	s = strings.TrimSuffix(s, "\r")
	if i := strings.IndexByte(s, '\t'); i >= 0 {
		s = s[:i]
	}
	if strings.HasPrefix(s, `"`) {
		if u, err := strconv.Unquote(s); err == nil {
			s = u
		}
	}
	if s == devNull {
		return ""
	}
	return s
}

// stripPrefixes drops git's "a/" and "b/" when both sides use them.
func stripPrefixes(oldPath, newPath string) (string, string) {
	hasA := oldPath == "" || strings.HasPrefix(oldPath, "a/")
	hasB := newPath == "" || strings.HasPrefix(newPath, "b/")
	if !hasA || !hasB {
		return oldPath, newPath
	}
	return strings.TrimPrefix(oldPath, "a/"), strings.TrimPrefix(newPath, "b/")
}

// hunk parses one hunk, reading exactly the lines its header counts.
func (p *patchParser) hunk() (hunk, error) {
	h, err := parseHunkHeader(p.lines[p.i])
	if err != nil {
		return hunk{}, err
	}
	p.i++
	var last byte
	for len(h.old) < h.oldLines || len(h.new) < h.newLines || p.markerNext() {
		if p.i >= len(p.lines) {
			return hunk{}, errors.New("hunk is cut short")
		}
		if last, err = h.addLine(p.lines[p.i], last); err != nil {
			return hunk{}, err
		}
		p.i++
	}
	if len(h.old) != h.oldLines || len(h.new) != h.newLines {
		return hunk{}, errors.New("hunk line counts do not match its header")
	}
	return h, nil
}

func (p *patchParser) markerNext() bool {
	return p.i < len(p.lines) && strings.HasPrefix(p.lines[p.i], `\`)
}

func parseHunkHeader(line string) (hunk, error) {
	m := hunkHeader.FindStringSubmatch(line)
	if m == nil {
		return hunk{}, fmt.Errorf("malformed hunk header %q", line)
	}
	n := make([]int, 4)
	for i, s := range m[1:] {
		n[i] = 1 // an omitted count is 1
		if s != "" {
			v, err := strconv.Atoi(s)
			if err != nil || v > 1<<24 {
				return hunk{}, fmt.Errorf("malformed hunk header %q", line)
			}
			n[i] = v
		}
	}
	return hunk{oldStart: n[0], oldLines: n[1], newStart: n[2], newLines: n[3]}, nil
}

// addLine adds one hunk body line; last is the kind of the previous line,
// which a "\ No newline at end of file" marker refers to.
func (h *hunk) addLine(line string, last byte) (byte, error) {
	if line == "" {
		line = " " // an empty context line whose space an editor trimmed
	}
	kind, text := line[0], line[1:]+"\n"
	switch kind {
	case ' ':
		h.old, h.new = append(h.old, text), append(h.new, text)
	case '-':
		h.old = append(h.old, text)
	case '+':
		h.new = append(h.new, text)
	case '\\':
		return last, h.noNewline(last)
	default:
		return 0, fmt.Errorf("malformed hunk line %q", line)
	}
	return kind, nil
}

// noNewline removes the "\n" of the line the marker follows.
func (h *hunk) noNewline(last byte) error {
	trim := func(lines []string) {
		lines[len(lines)-1] = strings.TrimSuffix(lines[len(lines)-1], "\n")
	}
	switch last {
	case ' ':
		trim(h.old)
		trim(h.new)
	case '-':
		trim(h.old)
	case '+':
		trim(h.new)
	default:
		return errors.New(`"\ No newline" marker without a line`)
	}
	return nil
}
