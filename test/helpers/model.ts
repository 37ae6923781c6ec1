/** Model-based tests (fast-check): run a command, then check the invariants against the model. */
import type fc from "fast-check";

export function checked<M extends object, R>(c: fc.Command<M, R>, invariants: (m: M, r: R) => void): fc.Command<M, R> {
  return {
    check: (m) => c.check(m),
    run: (m, r) => {
      c.run(m, r);
      invariants(m, r);
    },
    toString: () => c.toString(),
  };
}
