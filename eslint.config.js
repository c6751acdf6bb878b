// Lint for the browser client, the demo page and the browser tests (`npm run lint`).
// Formatting is prettier's job (`npm run format:check`), so no style rules here.
import js from '@eslint/js';
import globals from 'globals';

export default [
  js.configs.recommended,
  {
    files: ['static/**/*.js'],
    languageOptions: {
      ecmaVersion: 2022,
      sourceType: 'module',
      globals: globals.browser,
    },
  },
  {
    // Tests run under node, but the callbacks they hand to page.evaluate/waitForFunction run in
    // the page, so both sets of globals are in scope.
    files: ['tests/browser/**/*.mjs'],
    languageOptions: {
      ecmaVersion: 2022,
      sourceType: 'module',
      globals: { ...globals.node, ...globals.browser },
    },
  },
];
