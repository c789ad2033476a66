// Lint and format (the Effect monorepo's setup: typescript-eslint plus @effect/eslint-plugin's dprint
// rule at line width 120). `pnpm lint` checks, `pnpm format` rewrites.
import js from "@eslint/js"
import effect from "@effect/eslint-plugin"
import tseslint from "typescript-eslint"

/** Product code takes time only from Effect's Clock and Schedule, so TestClock drives every timer. */
const wallClock = [
  { selector: "CallExpression[callee.object.name='Date'][callee.property.name='now']", message: "Date.now(): use Clock" },
  { selector: "NewExpression[callee.name='Date'][arguments.length=0]", message: "new Date(): use Clock or DateTime" },
  { selector: "CallExpression[callee.name=/^set(Timeout|Interval|Immediate)$/]", message: "raw timer: use Effect.sleep or Schedule" },
  {
    selector: "CallExpression[callee.object.name='performance'][callee.property.name='now']",
    message: "performance.now(): use Clock"
  }
]

export default tseslint.config(
  { ignores: ["**/node_modules", "**/dist", "**/.run", "**/build", "**/*.d.ts"] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ["**/*.ts", "**/*.mjs", "**/*.js"],
    plugins: { "@effect": effect },
    rules: {
      "@effect/dprint": [
        "error",
        {
          config: {
            indentWidth: 2,
            lineWidth: 120,
            semiColons: "asi",
            quoteStyle: "alwaysDouble",
            trailingCommas: "never",
            operatorPosition: "maintain",
            "arrowFunction.useParentheses": "force"
          }
        }
      ],
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_" }],
      "@typescript-eslint/no-explicit-any": "error",
      "@typescript-eslint/consistent-type-imports": ["error", { fixStyle: "inline-type-imports" }],
      "no-restricted-syntax": "off"
    }
  },
  {
    files: ["packages/*/src/**/*.ts", "apps/*/src/**/*.ts"],
    rules: { "no-restricted-syntax": ["error", ...wallClock] }
  },
  {
    files: ["**/*.mjs", "**/*.js"],
    languageOptions: { globals: { process: "readonly", console: "readonly" } }
  }
)
