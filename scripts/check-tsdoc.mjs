#!/usr/bin/env node
/**
 * Lists what the built package exports without TSDoc: every symbol of every entry point in
 * package.json `exports`, and every public member of those symbols as the emitted `.d.ts` files
 * declare them (properties, methods, accessors, constructor parameter properties, enum members;
 * of interfaces, classes and the object types of type aliases, type literals nested in them
 * included), and the members our `declare global` / `declare module` blocks add to other
 * packages' interfaces. A declaration needs a comment of its own with a summary: an
 * implementation does not borrow its interface's, an overload not its sibling's, and a comment
 * on the line of a type literal's `{` is not its first member's (TypeScript, and so editors,
 * read it as the brace's: write the literal's members one a line). Members
 * declared outside our `.d.ts` files (inherited from Node's `Error`, `EventEmitter`, …) are
 * skipped: they are not ours to document, and so are private members and those marked `@internal`.
 *
 *   npm run build && node scripts/check-tsdoc.mjs [package directory, default: this repository]
 *
 * Prints one `entry: Symbol.member` line per gap. Exits 0 when there is none, 1 when there is
 * any, 2 when an entry point's `.d.ts` is missing (not built).
 */
import { existsSync, readFileSync, realpathSync } from 'node:fs';
import { join, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const root = realpathSync(resolve(process.argv[2] ?? fileURLToPath(new URL('..', import.meta.url))));
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));

/** Where a target of the `exports` map keeps its types, if it has any. */
function typesOf(target) {
  if (typeof target === 'string') return target.endsWith('.d.ts') ? target : undefined;
  if (target === null || typeof target !== 'object') return undefined;
  if (typeof target.types === 'string') return target.types;
  return Object.values(target).map(typesOf).find((found) => found !== undefined);
}

const entries = Object.entries(typeof pkg.exports === 'object' ? pkg.exports : { '.': pkg.exports ?? pkg.types })
  .map(([subpath, target]) => ({ label: pkg.name + subpath.slice(1), types: typesOf(target) }))
  .filter((entry) => entry.types !== undefined)
  .map((entry) => ({ ...entry, file: join(root, entry.types) }));
const unbuilt = entries.filter((entry) => !existsSync(entry.file));
if (unbuilt.length > 0) {
  console.error(`check-tsdoc: no ${unbuilt.map((entry) => entry.types).join(', ')}; build first (npm run build)`);
  process.exit(2);
}

const options = {
  target: ts.ScriptTarget.ES2022,
  module: ts.ModuleKind.NodeNext,
  moduleResolution: ts.ModuleResolutionKind.NodeNext,
  lib: ['lib.es2022.d.ts', 'lib.esnext.disposable.d.ts'],
  types: ['node'],
  strict: true,
  skipLibCheck: true,
  noEmit: true,
};
const host = ts.createCompilerHost(options);
// Type roots (@types/node) are looked for from the package's directory up, not the caller's.
host.getCurrentDirectory = () => root;
const program = ts.createProgram({ rootNames: entries.map((entry) => entry.file), options, host });
const checker = program.getTypeChecker();

/** Ours: a file of the package itself, not of a dependency it imports types from (nor TypeScript's lib). */
const isOwnFile = (fileName) => {
  const path = realpathSync(fileName);
  return path.startsWith(root + sep) && !path.slice(root.length).split(sep).includes('node_modules');
};
const ownDeclarations = (symbol) => (symbol.declarations ?? []).filter((declaration) => isOwnFile(declaration.getSourceFile().fileName));

/** Whether a declaration carries a TSDoc comment of its own with a summary. */
function hasDoc(declaration) {
  return ts.getJSDocCommentsAndTags(declaration).some((doc) => ts.isJSDoc(doc) && ts.getTextOfJSDocComment(doc.comment)?.trim());
}

/**
 * Whether every declaration of ours of a symbol is documented: each overload and each merged
 * declaration carries its own comment; a setter is covered by its getter's.
 */
function isDocumented(declarations) {
  const getter = declarations.find((declaration) => ts.isGetAccessorDeclaration(declaration));
  return declarations.every((declaration) => hasDoc(ts.isSetAccessorDeclaration(declaration) && getter ? getter : declaration));
}

/** A member's name as it reads in code: `add`, `[Symbol.asyncDispose]`. */
const memberName = (member) => checker.symbolToString(member);

/** Private members (`private x`, `#x`) and those marked `@internal` are no one's API. */
const isPrivate = (declaration) =>
  (declaration.name !== undefined && ts.isPrivateIdentifier(declaration.name)) ||
  (ts.getCombinedModifierFlags(declaration) & ts.ModifierFlags.Private) !== 0 ||
  ts.getJSDocTags(declaration).some((tag) => tag.tagName.text === 'internal');

/** The properties a type offers: of each member of a union, of the whole of anything else. */
function propertiesOf(type) {
  const types = type.isUnion() ? type.types : [type];
  return [...new Set(types.flatMap((each) => checker.getPropertiesOfType(each)))];
}

/** The type literals written in a type annotation: `{ … }`, `{ … } | undefined`, `readonly { … }[]`. */
function typeLiteralsIn(node) {
  if (node === undefined) return [];
  if (ts.isTypeLiteralNode(node)) return [node];
  if (ts.isUnionTypeNode(node) || ts.isIntersectionTypeNode(node)) return node.types.flatMap(typeLiteralsIn);
  if (ts.isParenthesizedTypeNode(node) || ts.isTypeOperatorNode(node)) return typeLiteralsIn(node.type);
  if (ts.isArrayTypeNode(node)) return typeLiteralsIn(node.elementType);
  return [];
}

/** The undocumented members among `members`, as paths under `prefix`, with those of the type literals they hold. */
function undocumentedMembers(prefix, members) {
  const gaps = [];
  for (const member of members) {
    const declarations = ownDeclarations(member).filter((declaration) => !isPrivate(declaration));
    if (declarations.length === 0) continue;
    const path = `${prefix}.${memberName(member)}`;
    if (!isDocumented(declarations)) gaps.push(path);
    for (const literal of declarations.flatMap((declaration) => typeLiteralsIn(declaration.type))) {
      gaps.push(...undocumentedMembers(path, literal.members.map((node) => node.symbol).filter((symbol) => symbol !== undefined)));
    }
  }
  return gaps;
}

/** The undocumented members of an exported symbol: of its class, interface, type or enum. */
function undocumentedMembersOf(name, symbol) {
  const members = [];
  if (symbol.flags & (ts.SymbolFlags.Class | ts.SymbolFlags.Interface | ts.SymbolFlags.TypeAlias)) {
    members.push(...propertiesOf(checker.getDeclaredTypeOfSymbol(symbol)));
  }
  if (symbol.flags & ts.SymbolFlags.Class) {
    members.push(...checker.getPropertiesOfType(checker.getTypeOfSymbol(symbol)).filter((member) => member.name !== 'prototype'));
  }
  if (symbol.flags & ts.SymbolFlags.Enum) members.push(...(symbol.exports?.values() ?? []));
  return undocumentedMembers(name, members);
}

const gaps = [];
for (const entry of entries) {
  const moduleSymbol = checker.getSymbolAtLocation(program.getSourceFile(entry.file));
  for (const exported of moduleSymbol ? checker.getExportsOfModule(moduleSymbol) : []) {
    const symbol = exported.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(exported) : exported;
    const declarations = ownDeclarations(symbol).filter((declaration) => !isPrivate(declaration));
    if (declarations.length === 0) continue;
    if (!isDocumented(declarations)) gaps.push(`${entry.label}: ${exported.name}`);
    gaps.push(...undocumentedMembersOf(exported.name, symbol).map((path) => `${entry.label}: ${path}`));
  }
}

/**
 * The interfaces a `declare global { … }` or `declare module '…' { … }` block of ours adds members
 * to, with their names (`Express.Request`).
 */
function augmentedInterfaces(node, names = []) {
  if (ts.isModuleDeclaration(node) && node.body !== undefined) {
    const inner = ts.isIdentifier(node.name) && !ts.isGlobalScopeAugmentation(node) ? [...names, node.name.text] : names;
    const statements = ts.isModuleBlock(node.body) ? node.body.statements : [node.body];
    return statements.flatMap((statement) => augmentedInterfaces(statement, inner));
  }
  if (ts.isInterfaceDeclaration(node)) return [{ name: [...names, node.name.text].join('.'), node }];
  return [];
}
const isAugmentation = (node) => ts.isModuleDeclaration(node) && (ts.isGlobalScopeAugmentation(node) || ts.isStringLiteral(node.name));
for (const file of program.getSourceFiles().filter((source) => isOwnFile(source.fileName))) {
  const where = realpathSync(file.fileName).slice(root.length + 1);
  for (const { name, node } of file.statements.filter(isAugmentation).flatMap((statement) => augmentedInterfaces(statement))) {
    const members = node.members.map((member) => member.symbol).filter((symbol) => symbol !== undefined);
    gaps.push(...undocumentedMembers(name, members).map((path) => `${where}: ${path}`));
  }
}

const unique = [...new Set(gaps)];
for (const gap of unique) console.log(gap);
if (unique.length > 0) {
  console.error(`check-tsdoc: ${unique.length} public symbols or members without TSDoc`);
  process.exit(1);
}
