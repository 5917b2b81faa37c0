// Tests run on the compiled output (npm test builds first): tsc type-checks tests and sources in one pass,
// and jest needs no TypeScript transform.
module.exports = {
  rootDir: __dirname,
  roots: ['<rootDir>/dist/test'],
  testMatch: ['**/*.test.js'],
  testEnvironment: 'node',
  testTimeout: 60000,
  maxWorkers: 2,
  reporters: ['default', '<rootDir>/dist/test/helpers/summary-reporter.js'],
};
