// The house format: the one the code was written in (single quotes, 160 columns, trailing commas).
export default { printWidth: 160, singleQuote: true, trailingComma: 'all', arrowParens: 'always', endOfLine: 'lf' };
