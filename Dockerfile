# One image for every Switchboard process; the command picks the role
# (gateway, tokenrange, shortener, redirect, chat, presence, push, or all).
# The build stage compiles TypeScript with the dev dependencies; the runtime stage holds only
# production dependencies and the compiled output (scripts/production-check.sh proves the same
# install and start on CI, which has no Docker engine).

FROM node:20-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY scripts/copy-runtime-assets.mjs ./scripts/
COPY cmd ./cmd
COPY platform ./platform
COPY services ./services
COPY gateway ./gateway
COPY gen ./gen
RUN npm run build

FROM node:20-bookworm-slim AS runtime
WORKDIR /app
ENV NODE_ENV=production
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force
COPY --from=build /src/dist ./dist
USER node
ENTRYPOINT ["node", "dist/cmd/switchboard.js"]
CMD ["all"]
