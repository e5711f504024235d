package policy

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// A rule (or default:) may carry a Rego module, inline (rego:) or in a file (regoFile:), whose `deny` messages are
// failures of the rule. This package keeps the module's text and where it was written; it does not import a Rego
// engine (OPA brings net/http, which TestNoIO keeps out). The engine plugs in through ModuleCompiler when the policy
// loads (WithModuleCompiler; package policy/rego implements it), and every module is compiled then, once: a policy
// whose module does not compile does not load.

// Module is a rule's Rego module as the policy gives it.
type Module struct {
	// Rule names the rule that carries it ("default" for the default rule).
	Rule string
	// Source is the module's text.
	Source string
	// File is where it is written: the policy file for rego:, the file as the policy names it for regoFile:.
	File string
	// Line is the line of File that holds the module's first line: 1 for a regoFile, the line after `rego: |` for
	// an inline block. For an inline module that is not a literal block (a quoted or folded string), its lines do
	// not map onto the file's, and Line is the rego: key's.
	Line int
	// Mapped reports whether the module's line N is File's line Line+N-1 (false only for the inline strings above).
	Mapped bool
}

// Origin names where the module is written, "policy.yaml:14", for messages.
func (m Module) Origin() string { return fmt.Sprintf("%s:%d", m.File, m.Line) }

// ModuleCompiler compiles a rule's Rego module when the policy loads. Its error lists the problems, each a
// *ModuleError when it knows the module's line (joined with errors.Join when there are several); Parse reports
// each at its line of the policy file (or of the regoFile).
type ModuleCompiler interface {
	CompileModule(m Module) (ModuleEvaluator, error)
}

// ModuleEvaluator is a compiled module. Deny evaluates it over in and returns its deny messages, sorted; none means
// the module admits. It must be pure (no I/O, same input, same messages) and bounded in time; its error means it
// could not decide (the time bound passed, a runtime error), which the rule's onError turns into a decision. It is
// called concurrently.
type ModuleEvaluator interface {
	Deny(in *Input) ([]string, error)
}

// ModuleError is one problem a ModuleCompiler found in a module, at a line of it (1 is its first line; 0 unknown).
type ModuleError struct {
	Line int
	Msg  string
}

func (e *ModuleError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("line %d: %s", e.Line, e.Msg)
	}
	return e.Msg
}

// Option changes how Parse and Load compile a policy.
type Option func(*options)

type options struct {
	modules ModuleCompiler
}

// WithModuleCompiler compiles the rules' Rego modules with mc. Default: none, and a policy with a rego: or regoFile:
// does not load (it could not be enforced as written).
func WithModuleCompiler(mc ModuleCompiler) Option { return func(o *options) { o.modules = mc } }

// Bounds on what a module's messages add to a decision: the message becomes a 403 body, a Warning header and an
// audit record, so a module that denies with every finding's name cannot make them unbounded.
const (
	maxDenials     = 10  // messages reported; the rest are counted
	maxDenialBytes = 300 // per message, cut at a rune boundary
)

// regoDoc is an inline module as the YAML file holds it: the text, and where it starts.
type regoDoc struct {
	text   string
	line   int  // the rego: value's line
	mapped bool // a literal block: the text's lines are the file's, from line+1
}

// UnmarshalYAML takes a string, remembering its line and style.
func (r *regoDoc) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!str" {
		return errors.New("expected a Rego module as a string (rego: |)")
	}
	r.text, r.line = n.Value, n.Line
	r.mapped = n.Style&yaml.LiteralStyle != 0
	if r.mapped {
		r.line++ // the text starts on the line after the | indicator
	}
	return nil
}

// ruleModule is a rule's compiled module.
type ruleModule struct {
	Module
	eval ModuleEvaluator
}

// module compiles the rule's rego: or regoFile:, nil when it has neither (or it does not compile: the problem is
// reported).
func (c *compiler) module(path, rule string, rd *ruleDoc) *ruleModule {
	var m Module
	field := join(path, "rego")
	switch {
	case rd.Rego != nil && rd.RegoFile != "":
		c.p.add(field, "give one of rego and regoFile, not both")
		return nil
	case rd.Rego != nil:
		m = Module{Rule: rule, Source: rd.Rego.text, File: c.p.src.file, Line: rd.Rego.line, Mapped: rd.Rego.mapped}
	case rd.RegoFile != "":
		field = join(path, "regoFile")
		data, ok := c.file(field, rd.RegoFile)
		if !ok {
			return nil
		}
		m = Module{Rule: rule, Source: string(data), File: rd.RegoFile, Line: 1, Mapped: true}
	default:
		return nil
	}
	if strings.TrimSpace(m.Source) == "" {
		c.p.add(field, "empty Rego module")
		return nil
	}
	if c.modules == nil {
		c.p.add(field, "Rego modules need a Rego engine, and this policy was loaded without one (policy.WithModuleCompiler)")
		return nil
	}
	ev, err := c.modules.CompileModule(m)
	if err != nil {
		c.moduleProblems(field, m, err)
		return nil
	}
	if ev == nil {
		c.p.add(field, "the Rego engine compiled no evaluator")
		return nil
	}
	return &ruleModule{Module: m, eval: ev}
}

// moduleProblems reports a module's compile errors: inline ones at their line of the policy file, those of a
// regoFile at the regoFile: line, naming the file and its line.
func (c *compiler) moduleProblems(field string, m Module, err error) {
	var errs []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	} else {
		errs = []error{err}
	}
	for _, err := range errs {
		var me *ModuleError
		if !errors.As(err, &me) {
			c.p.add(field, "%s", oneLine(err.Error()))
			continue
		}
		msg := oneLine(me.Msg)
		switch {
		case me.Line <= 0:
			c.p.add(field, "%s", msg)
		case m.File != c.p.src.file: // a regoFile
			c.p.add(field, "%s:%d: %s", m.File, me.Line, msg)
		case !m.Mapped:
			c.p.add(field, "module line %d: %s", me.Line, msg)
		default:
			e := c.p.src.shared().Errorf(field, "%s", msg)
			e.Line = m.Line + me.Line - 1
			c.p.errs = append(c.p.errs, e)
		}
	}
}

// checkModule runs the rule's module after the built-in requirements: each deny message is a failure, "rego: MSG"; an
// error (the time bound passed) is the rule's onError, a failure by default.
func (r *Rule) checkModule(e *evaluation, f Facts) {
	from := e.mark()
	in := r.input(f)
	denials, err := r.module.eval.Deny(&in)
	switch {
	case err != nil && r.onError == OnErrorAllow:
		e.note("rego: could not decide: %s; passed (onError: allow)", err)
	case err != nil:
		e.fail("rego: could not decide: %s", err)
	case len(denials) == 0:
		e.note("rego: no deny messages (%s)", r.module.Origin())
	default:
		for _, msg := range denials[:min(len(denials), maxDenials)] {
			e.fail("rego: %s", truncate(oneLine(msg), maxDenialBytes))
		}
		if n := len(denials) - maxDenials; n > 0 {
			e.fail("rego: %d more deny %s", n, plural(n, "message", "messages"))
		}
	}
	e.done(Check{Requirement: "rego"}, from)
}

// truncate cuts s to at most n bytes at a rune boundary, marking the cut with "…".
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n - len("…")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}
