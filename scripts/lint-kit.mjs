// Shared by the house's lint scripts: every TypeScript file under a folder, and every module
// a file refers to, found by the TypeScript parser itself (so comments, odd spacing, line
// breaks, `export ... from`, `import type`, dynamic `import()` and `require` are all seen the
// way the compiler sees them, never missed by a regular expression).
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import ts from 'typescript';

/** Every .ts file under `dir`, recursively. */
export function tsFiles(dir) {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? tsFiles(path) : path.endsWith('.ts') ? [path] : [];
  });
}

export function parse(file) {
  return ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.Latest, true);
}

export function lineOf(source, node) {
  return source.getLineAndCharacterOfPosition(node.getStart(source)).line + 1;
}

/**
 * The modules a file refers to: `{ spec, line }` for each import, `export ... from`, import
 * type, `import x = require()`, `/// <reference path>`, `import()` and `require()` with a
 * literal; `{ spec: null, line, why }` for an `import()`, `require()` or `createRequire` whose
 * target cannot be read off the code (a computed path), which no layering can vouch for.
 */
export function moduleRefs(source) {
  const refs = [];
  for (const r of source.referencedFiles) refs.push({ spec: r.fileName, line: source.getLineAndCharacterOfPosition(r.pos).line + 1 });
  const literal = (n) => n !== undefined && (ts.isStringLiteral(n) || ts.isNoSubstitutionTemplateLiteral(n));
  const visit = (node) => {
    if ((ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) && node.moduleSpecifier !== undefined && literal(node.moduleSpecifier)) {
      refs.push({ spec: node.moduleSpecifier.text, line: lineOf(source, node) });
    } else if (ts.isImportEqualsDeclaration(node) && ts.isExternalModuleReference(node.moduleReference)) {
      const e = node.moduleReference.expression;
      if (literal(e)) refs.push({ spec: e.text, line: lineOf(source, node) });
      else refs.push({ spec: null, line: lineOf(source, node), why: 'require() of a computed path' });
    } else if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument) && literal(node.argument.literal)) {
      refs.push({ spec: node.argument.literal.text, line: lineOf(source, node) });
    } else if (ts.isCallExpression(node)) {
      const callee = node.expression;
      const isImport = callee.kind === ts.SyntaxKind.ImportKeyword;
      const isRequire = ts.isIdentifier(callee) && callee.text === 'require';
      if (isImport || isRequire) {
        const arg = node.arguments[0];
        if (literal(arg)) refs.push({ spec: arg.text, line: lineOf(source, node) });
        else refs.push({ spec: null, line: lineOf(source, node), why: `${isImport ? 'import()' : 'require()'} of a computed path` });
      }
    } else if (ts.isIdentifier(node) && node.text === 'createRequire') {
      refs.push({ spec: null, line: lineOf(source, node), why: 'createRequire (a require the layering cannot follow)' });
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return refs;
}

/** Whether an identifier is used as a value (not a property name, a declared name or a type). */
export function isValueUse(node) {
  const p = node.parent;
  if (p === undefined) return true;
  if (ts.isPropertyAccessExpression(p) && p.name === node) return false;
  if ((ts.isPropertyAssignment(p) || ts.isPropertyDeclaration(p) || ts.isPropertySignature(p) || ts.isMethodDeclaration(p)
    || ts.isMethodSignature(p) || ts.isGetAccessor(p) || ts.isSetAccessor(p) || ts.isEnumMember(p)) && p.name === node) return false;
  if (ts.isQualifiedName(p)) return false;
  for (let a = p; a !== undefined; a = a.parent) if (ts.isTypeNode(a)) return false;
  return true;
}

export { ts };
