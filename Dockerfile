# One image for every Switchboard process; the command picks the role
# (gateway, tokenrange, shortener, redirect, chat, presence, push, or all).
FROM node:20-bookworm-slim
WORKDIR /app
ENV NODE_ENV=production
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts && npm cache clean --force
COPY tsconfig.json ./
COPY cmd ./cmd
COPY platform ./platform
COPY services ./services
COPY gateway ./gateway
COPY gen ./gen
USER node
ENTRYPOINT ["node", "--import", "tsx", "cmd/switchboard.ts"]
CMD ["all"]
