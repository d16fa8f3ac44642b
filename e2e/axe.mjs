// Automated accessibility check of dashboard pages with axe-core (Deque, MPL-2.0; pinned
// in package.json). Each check injects axe's source into the page as it is and runs all
// of axe's default rules (WCAG 2.x A/AA and best practices) over the whole document;
// violations of impact "serious" or "critical" are collected, and the test file ends by
// asserting that none were seen (A11y.assertClean), listing each one as rule, selector
// and page.
//
// The source goes in through page.evaluate (the DevTools protocol), not a <script> tag:
// the dashboard's Content-Security-Policy forbids inline scripts, and it stays on.
//
// Impact levels: https://github.com/dequelabs/axe-core/blob/develop/doc/API.md#results-object

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
// Evaluated as a script whose value is undefined (page.evaluate would call a function value).
const AXE_SOURCE = `${readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8')}\n;undefined`;
const FAILING = new Set(['serious', 'critical']);

export class A11y {
  constructor() {
    /** "rule-id  selector  on label (path): help" lines, in the order seen, deduplicated. */
    this.violations = [];
    /** Every label checked, so the report says what was covered. */
    this.checked = [];
    /** Time spent injecting and running axe, in milliseconds. */
    this.ms = 0;
    this.seen = new Set();
  }

  /**
   * Runs axe over `page` as it is now (after navigation or an interaction) and records
   * its serious and critical violations under `label` (e.g. "activity (administrator)").
   * Returns the violations of this page, so a caller may also assert on them at once.
   */
  async check(page, label) {
    const started = performance.now();
    await page.waitForLoadState('load');
    await page.evaluate(AXE_SOURCE);
    const found = await page.evaluate(async (failing) => {
      // eslint-disable-next-line no-undef
      const result = await axe.run(document, { resultTypes: ['violations'] });
      const out = [];
      for (const v of result.violations) {
        for (const n of v.nodes) {
          const impact = n.impact ?? v.impact;
          if (!failing.includes(impact)) continue;
          out.push({
            rule: v.id,
            impact,
            target: n.target.map((t) => (Array.isArray(t) ? t.join(' >>> ') : t)).join(' '),
            help: v.help,
            // axe's own explanation, e.g. the two colours and their contrast ratio.
            why: (n.failureSummary ?? '').replace(/\s+/g, ' ').trim().slice(0, 300),
          });
        }
      }
      return out;
    }, [...FAILING]);
    this.ms += performance.now() - started;
    const where = new URL(page.url());
    const at = `${label} (${where.pathname}${where.search})`;
    this.checked.push(at);
    const lines = found.map((f) => `${f.rule} [${f.impact}] ${f.target} on ${at}: ${f.help}. ${f.why}`);
    found.forEach((f, i) => {
      const key = `${f.rule} ${f.target} ${label}`;
      if (!this.seen.has(key)) {
        this.seen.add(key);
        this.violations.push(lines[i]);
      }
    });
    return lines;
  }

  /** Fails with every serious or critical violation seen, one per line. */
  assertClean() {
    assert.ok(this.checked.length > 0, 'no page was checked');
    if (this.violations.length) {
      assert.fail(`${this.violations.length} serious or critical accessibility violation(s):\n  `
        + this.violations.join('\n  '));
    }
  }

  /** One line for the test log: how many pages, and the time axe took. */
  summary() {
    return `axe-core: ${this.checked.length} page states checked in ${(this.ms / 1000).toFixed(1)} s`;
  }
}
