import { describe, expect, it } from "vitest";
import { ALPHABET, CODE_LENGTH } from "../tokenrange/code-permutation.js";
import { aliasProblem, GENERATED_CODE, GENERATED_CODE_LENGTH, isCodeShaped, isLinkCode, RESERVED_WORDS } from "./code-grammar.js";

describe("links code grammar", () => {
  it("refuses every reserved word as an alias with ALIAS_RESERVED, whatever its case or length", () => {
    for (const w of RESERVED_WORDS) {
      expect(w, "reserved words are stored lower-case").toBe(w.toLowerCase());
      expect(isCodeShaped(w), `${w} must be code-shaped, or it needs no reserving`).toBe(true);
      for (const alias of [w, w.toUpperCase()]) expect(aliasProblem(alias)?.reason, alias).toBe("ALIAS_RESERVED");
      expect(isLinkCode(w)).toBe(false);
    }
  });

  it("takes the generated-code shape from the token-range code permutation", () => {
    expect(GENERATED_CODE_LENGTH).toBe(CODE_LENGTH);
    for (const c of ALPHABET) expect(GENERATED_CODE.test(c.repeat(CODE_LENGTH)), c).toBe(true);
    expect(isLinkCode("Ab3dE9z")).toBe(true);
  });

  it("keeps codes to 1..32 characters of [A-Za-z0-9_-]", () => {
    for (const ok of ["a", "my-link", "x".repeat(32), "A_b-9"]) expect(isLinkCode(ok), ok).toBe(true);
    for (const bad of ["", "x".repeat(33), "a.b", "a/b", "..", "caf\u00e9", "a b", "favicon.ico", "robots.txt", ".well-known"]) {
      expect(isLinkCode(bad), bad).toBe(false);
    }
  });

  it("explains every other alias refusal with ALIAS_INVALID", () => {
    expect(aliasProblem("abc")).toMatchObject({ reason: "ALIAS_INVALID", message: expect.stringMatching(/4-32 characters/) });
    expect(aliasProblem("my.link")).toMatchObject({ reason: "ALIAS_INVALID", message: expect.stringMatching(/may only contain/) });
    expect(aliasProblem("abC1234")).toMatchObject({ reason: "ALIAS_INVALID", message: expect.stringMatching(/generated codes/) });
    expect(aliasProblem("my-alias")).toBeUndefined();
  });
});
